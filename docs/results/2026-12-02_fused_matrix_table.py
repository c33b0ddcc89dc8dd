#!/usr/bin/env python3
"""Issue 17's matrix table from `tools/benchmark.py model` JSON results (variants b and c).

    python3 docs/results/2026-12-02_fused_matrix_table.py docs/results/2026-12-02_fused_matrix_*.json

Per row: (c)/(b) as the ratio of medians and as the median of the same-repeat ratios, the range
of the same-repeat ratios, and the noise: the spread of Detectron2's own repeats,
(max - min) / median of (b). A ratio above 1.00 counts as "within noise" when it exceeds 1 by
less than that spread, otherwise as slower. Peak memory: (c)/(b) of the fresh-process peaks.
"""
import json
import statistics
import sys


def _ratios(row, metric):
    b, c = row["results"]["b"][metric], row["results"]["c"][metric]
    per_repeat = [x / y for x, y in zip(c["samples"], b["samples"])]
    noise = (b["max"] - b["min"]) / b["median"]
    return c["median"] / b["median"], statistics.median(per_repeat), per_repeat, noise


def _verdict(ratio, paired, noise):
    worst = max(ratio, paired)
    if worst <= 1.0:
        return "faster"
    return "within noise" if worst - 1.0 <= noise else "SLOWER"


def _cell(row, metric):
    ratio, paired, per_repeat, noise = _ratios(row, metric)
    return (f"{ratio:.2f} / {paired:.2f} ({min(per_repeat):.2f}–{max(per_repeat):.2f}), "
            f"±{noise * 100:.0f} %", _verdict(ratio, paired, noise))


def _memory(row, metric):
    value = row["ratios"]["c_to_b"].get(metric)
    return "—" if value is None else f"{value:.2f}"


def main(paths):
    print("| model | threads | image, batch | FREEZE_AT | train (c)/(b): median / same-repeat "
          "(range), noise | verdict | inference (c)/(b) | verdict | train peak | inference peak |")
    print("|---|---:|---|---:|---|---|---|---|---:|---:|")
    for path in paths:
        with open(path) as f:
            result = json.load(f)
        threads = result["device"]["threads"]
        for row in result["rows"]:
            arch = row.get("arch", result["settings"].get("arch", "R50-FPN"))
            h, w = row["image_size"]
            train, train_v = _cell(row, "train_step_s")
            infer, infer_v = _cell(row, "inference_s_per_image")
            print(f"| {arch} | {threads} | {h}×{w}, {row['images_per_batch']} | {row['freeze_at']} | "
                  f"{train} | {train_v} | {infer} | {infer_v} | "
                  f"{_memory(row, 'train_peak_memory_mib')} | {_memory(row, 'inference_peak_memory_mib')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
