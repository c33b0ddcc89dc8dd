"""Where a from-scratch (FREEZE_AT 0) GN Mask R-CNN training step spends its GN time, fused vs not.

Issue 17's workload: GN Mask R-CNN R50-FPN (4conv1fc box head; GN in backbone, FPN and heads),
MODEL.BACKBONE.FREEZE_AT 0, 2 images of 512x512, 128 RoIs per image. The same weights are loaded
into a model with MODEL.GN.FUSED True (gn_det's default) and one with False (nn.GroupNorm + ReLU,
which is Detectron2's GN path: tests/modeling/test_compat.py). Steps of the two alternate in one
process; one step of each is profiled with torch.profiler and the GN-related self times summed.

    PYTHONPATH=. python3 docs/results/2026-12-02_fused_freeze0_profile.py --threads 1 --repeats 5
"""
import argparse
import json
import statistics
import time

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

import gn_det

# Self time of these ops is the GN work of a step (forward, recompute, backward, the ReLU's).
GN_OPS = {
    "fused": ["gn_det::group_norm_act_forward", "gn_det::group_norm_act_apply",
              "gn_det::group_norm_act_backward"],
    "plain": ["aten::native_group_norm", "aten::native_group_norm_backward", "aten::relu_",
              "aten::relu", "aten::threshold_backward"],
}


def build(fused: bool, args):
    cfg = gn_det.add_gn_config(get_cfg())
    cfg.merge_from_file("configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_gn.yaml")
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.BACKBONE.FREEZE_AT", str(args.freeze_at),
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", str(args.rois), "MODEL.GN.FUSED", str(fused),
    ])
    return build_model(cfg).train()


def batch(args):
    gen = torch.Generator().manual_seed(0)
    s = args.image_size
    out = []
    for _ in range(args.images):
        image = torch.randint(0, 256, (3, s, s), generator=gen, dtype=torch.uint8)
        xy = torch.rand(6, 2, generator=gen) * (s * 0.6)
        wh = 32 + torch.rand(6, 2, generator=gen) * (s * 0.3)
        boxes = torch.cat([xy, xy + wh], 1)
        masks = torch.zeros(6, s, s, dtype=torch.bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
            masks[i, y0:y1, x0:x1] = True
        inst = Instances((s, s), gt_boxes=Boxes(boxes), gt_classes=torch.arange(6) % 80,
                         gt_masks=BitMasks(masks))
        out.append({"image": image, "instances": inst, "height": s, "width": s})
    return out


def step(model, inputs):
    losses = model(inputs)
    sum(losses.values()).backward()
    model.zero_grad(set_to_none=True)


def profiled(model, inputs):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step(model, inputs)
    return {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--rois", type=int, default=128)
    parser.add_argument("--freeze-at", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"fused": build(True, args), "plain": build(False, args)}
    models["plain"].load_state_dict(models["fused"].state_dict())
    inputs = batch(args)
    for m in models.values():  # warm-up: allocator, kernels' first calls
        torch.manual_seed(0)
        step(m, inputs)
    times = {k: [] for k in models}
    for r in range(args.repeats):
        for name in (["fused", "plain"] if r % 2 == 0 else ["plain", "fused"]):
            torch.manual_seed(0)  # the same RoI sampling for both
            t = time.perf_counter()
            step(models[name], inputs)
            times[name].append(time.perf_counter() - t)
    profile, all_selfs = {}, {}
    for name, m in models.items():
        torch.manual_seed(0)
        selfs = all_selfs[name] = profiled(m, inputs)
        profile[name] = {op: round(selfs.get(op, 0.0), 1) for op in GN_OPS[name]}
        profile[name]["gn_total_ms"] = round(sum(profile[name].values()), 1)
        profile[name]["step_total_self_ms"] = round(sum(selfs.values()), 1)
    # Where the two steps differ most, GN ops or not (the rest of the step runs the same ops).
    ops = set(all_selfs["fused"]) | set(all_selfs["plain"])
    diffs = {op: all_selfs["fused"].get(op, 0.0) - all_selfs["plain"].get(op, 0.0) for op in ops}
    top = sorted(diffs, key=lambda op: -abs(diffs[op]))[:15]
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    same_repeat = statistics.median(f / p for f, p in zip(times["fused"], times["plain"]))
    result = {
        "workload": vars(args), "torch": torch.__version__,
        "cpu_kernels": gn_det.layers.cpu_kernels_available(),
        "step_ms_median": {k: round(v, 1) for k, v in med.items()},
        "step_ms_all": {k: [round(x * 1e3, 1) for x in v] for k, v in times.items()},
        "fused_over_plain_same_repeat_median": round(same_repeat, 3),
        "profile_self_ms": profile,
        "largest_self_ms_differences_fused_minus_plain": {op: round(diffs[op], 1) for op in top},
        "loadavg": [round(x, 2) for x in __import__("os").getloadavg()],
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    np.random.seed(0)
    with EventStorage():  # Detectron2's heads log training statistics into it
        main()
