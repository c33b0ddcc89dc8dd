"""Training-loader throughput: gn_det's resumable stream against Detectron2's plain loader.

    PYTHONPATH=. python3 docs/results/2026-12-02_loader_throughput.py [--rounds 6] [--batches 40]

Both loaders are built from the same config (the main job's, on the embedded 600-image shapes
split: 160 px PNGs, random flip and resize, RLE masks as bitmasks) with the same
DATALOADER.NUM_WORKERS. Each round builds each loader afresh, drops its first 3 batches (worker
start-up) and times the next ``--batches``; the two loaders alternate, in rotated order, and the
medians of the rounds are compared. It also times, in the main process, what the stream adds
per image (deriving the seed, seeding and restoring the generators) against what mapping one
image costs (Detectron2's DatasetMapper: read, augment, masks), which noise does not blur.
Writes the JSON next to this script (or ``--output``).
"""
import argparse
import itertools
import json
import os
import statistics
import time

import torch

import gn_det  # noqa: F401  registers the embedded datasets
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_train_loader
from gn_det import add_gn_config
from gn_det.data import prepare_dataset
from gn_det.data.stream import _generators_seeded, _sample_seed, build_resumable_train_loader

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "Synthetic", "mask_rcnn_R_18_FPN_gn_scratch.yaml")
LOADERS = {"detectron2": build_detection_train_loader, "gn_det_stream": build_resumable_train_loader}


def images_per_second(build, cfg, batches: int) -> float:
    iterator = iter(build(cfg))
    for _ in range(3):
        next(iterator)
    start = time.perf_counter()
    images = sum(len(batch) for batch in itertools.islice(iterator, batches))
    seconds = time.perf_counter() - start
    del iterator  # stops the workers
    return images / seconds


def per_image_costs(cfg, repeats: int = 2000) -> dict:
    """Microseconds per image (median of 5): the stream's seeding in the main process
    (NUM_WORKERS 0: seed, then restore the process's generators) and in a loader worker (seed
    only), and Detectron2's mapper."""
    def seeding(restore):
        start = time.perf_counter()
        for position in range(repeats):
            with _generators_seeded(_sample_seed(cfg.SEED, position), restore=restore):
                pass
        return (time.perf_counter() - start) / repeats * 1e6

    records = DatasetCatalog.get(cfg.DATASETS.TRAIN[0])[:100]
    mapper = DatasetMapper(cfg, True)

    def mapping():
        start = time.perf_counter()
        for record in records:
            mapper(record)
        return (time.perf_counter() - start) / len(records) * 1e6

    main_us = statistics.median(seeding(True) for _ in range(5))
    worker_us = statistics.median(seeding(False) for _ in range(5))
    mapping_us = statistics.median(mapping() for _ in range(5))
    return {"seeding_us_main_process": round(main_us, 1), "seeding_us_worker": round(worker_us, 1),
            "mapper_us": round(mapping_us, 1), "main_process_fraction": round(main_us / mapping_us, 4),
            "worker_fraction": round(worker_us / mapping_us, 4)}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--output", default=os.path.splitext(os.path.abspath(__file__))[0] + ".json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = get_cfg()
    add_gn_config(cfg)
    cfg.merge_from_file(CONFIG)
    prepare_dataset("gn_det_shapes_train")
    result = {"config": os.path.relpath(CONFIG, REPO), "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH,
              "batches_timed": args.batches, "rounds": args.rounds, "loadavg_before": loadavg(), "workers": {}}
    result["per_image"] = per_image_costs(cfg)
    print(f"per image: {json.dumps(result['per_image'])}", flush=True)
    for workers in args.workers:
        run_cfg = cfg.clone()
        run_cfg.DATALOADER.NUM_WORKERS = workers
        samples = {name: [] for name in LOADERS}
        for round_index in range(args.rounds):
            order = list(LOADERS) if round_index % 2 == 0 else list(reversed(LOADERS))
            for name in order:
                samples[name].append(images_per_second(LOADERS[name], run_cfg, args.batches))
        medians = {name: statistics.median(v) for name, v in samples.items()}
        result["workers"][str(workers)] = {
            "images_per_second": {name: [round(x, 1) for x in v] for name, v in samples.items()},
            "median": {name: round(m, 1) for name, m in medians.items()},
            "ratio_stream_to_detectron2": round(medians["gn_det_stream"] / medians["detectron2"], 3),
            # Round-to-round spread of Detectron2's own loader: the noise to compare against.
            "detectron2_spread": round((max(samples["detectron2"]) - min(samples["detectron2"])) / medians["detectron2"], 3),
        }
        print(f"NUM_WORKERS {workers}: {json.dumps(result['workers'][str(workers)])}", flush=True)
    result["loadavg_after"] = loadavg()
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
