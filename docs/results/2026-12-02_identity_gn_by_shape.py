#!/usr/bin/env python3
"""Identity GN without grad (what inference runs for res conv3 and FPN outputs), per shape of
R50-FPN at 800x1333 and R18-FPN at 384x640: gn_det's fused op (C++ kernel) against
F.group_norm (native_group_norm), interleaved, median of 14 after a warm-up.

    OMP_NUM_THREADS=1 PYTHONPATH=. python3 docs/results/2026-12-02_identity_gn_by_shape.py 1 out.json
"""
import sys, time, torch, torch.nn.functional as F, statistics, json
from gn_det.layers import group_norm_act
torch.set_num_threads(int(sys.argv[1]))
shapes = [(1,256,200,336),(1,128,200,336),(1,256,100,168),(1,512,100,168),(1,256,50,84),(1,1024,50,84),(1,256,25,42),(1,2048,25,42),(1,256,13,21),
          (4,64,96,160),(4,64,48,80),(4,64,24,40),(4,64,12,20),(1,64,200,336),(1,64,100,168)]
rows = []
with torch.no_grad():
    for shape in shapes:
        x = torch.randn(*shape); w = torch.randn(shape[1]); b = torch.randn(shape[1])
        fns = {"native": lambda: F.group_norm(x, 32, w, b), "cpp": lambda: group_norm_act(x, w, b, 32, 1e-5, "identity")}
        t = {k: [] for k in fns}
        for r in range(15):
            for k in (("native", "cpp") if r % 2 else ("cpp", "native")):
                t0 = time.perf_counter(); y = fns[k](); t[k].append(time.perf_counter() - t0); del y
        m = {k: statistics.median(v[1:]) * 1e3 for k, v in t.items()}
        rows.append({"shape": shape, **m}); print(shape, {k: round(v, 3) for k, v in m.items()}, round(m["cpp"] / m["native"], 3), flush=True)
json.dump(rows, open(sys.argv[2], "w"), indent=1)
