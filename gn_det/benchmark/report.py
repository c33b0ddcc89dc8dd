"""The benchmark result as Markdown tables and as a JSON file."""
import json
import os
from typing import Dict, List, Optional

from .runner import METRICS

__all__ = ["format_markdown", "write_json", "read_json"]

_HEADERS = {
    "train_step_s": "train s/iter",
    "inference_s_per_image": "inference s/im",
    "train_peak_memory_mib": "train peak mem MiB",
    "inference_peak_memory_mib": "inference peak mem MiB",
}


def _ratio(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.2f}"


def _value(summary: Optional[Dict], unit: str) -> str:
    if summary is None:
        return "not measured"
    if unit == "MiB":
        if summary["min"] == summary["max"]:
            return f"{summary['median']:.0f}"
        return f"{summary['median']:.0f} [{summary['min']:.0f}–{summary['max']:.0f}]"
    return f"{summary['median']:.3f} [{summary['min']:.3f}–{summary['max']:.3f}]"


def _variant_label(result: Dict, key: str) -> str:
    return f"({key}) {result['variants'][key]['name']}"


def _ratio_to_a(row: Dict, key: str, metric: str) -> str:
    if key == "a":
        return "1.00" if row["results"]["a"][metric] is not None else "–"
    return _ratio(row["ratios"].get("to_a", {}).get(key, {}).get(metric))


def _row_cells(result: Dict, row: Dict, key: str) -> List[str]:
    cells = []
    for metric, unit in METRICS:
        cells.append(_value(row["results"][key][metric], unit))
        if "to_a" in row["ratios"]:
            cells.append(_ratio_to_a(row, key, metric))
    return cells


def _metric_headers(with_ratio: bool) -> List[str]:
    out = []
    for metric, _ in METRICS:
        out.append(_HEADERS[metric])
        if with_ratio:
            out.append("× (a)")
    return out


def _table(headers: List[str], rows: List[List[str]]) -> List[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _c_to_b_line(row: Dict) -> Optional[str]:
    c_to_b = row["ratios"].get("c_to_b")
    if not c_to_b:
        return None
    parts = [f"{_HEADERS[m]} ×{_ratio(c_to_b[m])}" for m, _ in METRICS]
    return "(c) gn_det GN vs (b) Detectron2 GN: " + ", ".join(parts) + "."


def _paired_line(result: Dict, row: Dict) -> Optional[str]:
    parts = []
    for k, ratios in row["ratios"].get("to_a_paired", {}).items():
        parts.append(f"({k}) train ×{_ratio(ratios.get('train_step_s'))}, "
                     f"inference ×{_ratio(ratios.get('inference_s_per_image'))}")
    c_to_b = row["ratios"].get("c_to_b_paired")
    if c_to_b:
        parts.append(f"(c)/(b) train ×{_ratio(c_to_b.get('train_step_s'))}, "
                     f"inference ×{_ratio(c_to_b.get('inference_s_per_image'))}")
    if not parts:
        return None
    return ("Same-repeat time ratios to (a) (median over repeats of the ratio within a repeat; "
            "a drifting machine load cancels out of them): " + "; ".join(parts) + ".")


def _allocator_note(dev: Dict) -> str:
    env = dev.get("allocator_env")  # absent in results written before it was recorded
    if env is None:
        return ""
    if not env:
        return " Allocator: the C library's defaults."
    return " Allocator settings: " + ", ".join(f"{k}={v}" for k, v in sorted(env.items())) + "."


def _freeze_at(row: Dict) -> int:
    return row.get("freeze_at", 2)  # results written before the option froze stem and res2


def _main_section(result: Dict) -> List[str]:
    s, dev = result["settings"], result["device"]
    main = next(r for r in result["rows"] if r["main"])
    keys = list(result["variants"])
    with_ratio = "to_a" in main["ratios"]
    h, w = main["image_size"]
    lines = [
        f"### Mask R-CNN {result['settings'].get('arch', 'R50-FPN')} 4conv1fc: {h}x{w} images, {main['images_per_batch']} per batch, "
        f"FREEZE_AT {_freeze_at(main)}",
        "",
        f"{dev['name']} ({dev['type']}, {dev['threads']} threads), {result['started']}; torch "
        f"{dev['torch']}, detectron2 {dev['detectron2']}. Medians of {s['repeats']} repeats after "
        f"{s['warmup']} warm-up, [min–max]; variants interleaved. Load average at start/end: "
        f"{result['conditions']['load_average_start']} / {result['conditions']['load_average_end']}."
        f"{_allocator_note(dev)}",
        "",
    ]
    table_rows = [[_variant_label(result, k)] + _row_cells(result, main, k) for k in keys]
    lines += _table(["variant"] + _metric_headers(with_ratio), table_rows)
    for line in (_c_to_b_line(main), _paired_line(result, main)):
        if line:
            lines += ["", line]
    return lines


def _scaling_section(result: Dict) -> List[str]:
    keys = list(result["variants"])
    with_ratio = "to_a" in result["rows"][0]["ratios"]
    rows = []
    for row in result["rows"]:
        size = "x".join(str(x) for x in row["image_size"])
        for k in keys:
            rows.append([size, str(row["images_per_batch"]), str(_freeze_at(row)),
                         _variant_label(result, k)] + _row_cells(result, row, k))
    lines = ["### Scaling: images per batch, image size and FREEZE_AT", ""]
    lines += _table(["image size", "im/batch", "FREEZE_AT", "variant"] + _metric_headers(with_ratio),
                    rows)
    c_to_b = [(row, row["ratios"].get("c_to_b")) for row in result["rows"]]
    if any(v for _, v in c_to_b):
        lines += ["", "(c) / (b) per row: " + "; ".join(
            f"{'x'.join(map(str, r['image_size']))} {r['images_per_batch']} im FREEZE_AT "
            f"{_freeze_at(r)}: train ×"
            f"{_ratio(v['train_step_s'])}, inference ×{_ratio(v['inference_s_per_image'])}"
            for r, v in c_to_b if v)]
    return lines


def _layer_section(result: Dict) -> List[str]:
    layers = result.get("layers")
    if not layers:
        return []
    src = layers["shapes_from"]
    settings = result["settings"]
    headers = ["shape (N, C, H, W)", "G", "where", "calls"]
    for phase, label in (("infer", "forward"), ("train", "forward+backward")):
        headers += [f"torch {label} ms", f"fused {label} ms", "× torch",
                    f"{label} of copy BW (torch / fused)"]
    rows = []
    for r in layers["shapes"]:
        cells = [str(tuple(r["shape"])), str(r["groups"]), ", ".join(r["where"]), str(r["calls_per_step"])]
        for phase in ("infer", "train"):
            cells += [f"{r[f'torch_{phase}_ms']:.2f}", f"{r[f'fused_{phase}_ms']:.2f}",
                      f"{r[f'fused_{phase}_ms'] / r[f'torch_{phase}_ms']:.2f}",
                      f"{r[f'torch_{phase}_fraction_of_copy']:.2f} / "
                      f"{r[f'fused_{phase}_fraction_of_copy']:.2f}"]
        rows.append(cells)
    t = layers["totals_ms"]
    lines = [
        f"### GN+ReLU layers on {src.get('arch', 'R50-FPN')} Mask R-CNN's shapes",
        "",
        f"Shapes recorded from variant ({src['variant']}) at {src['image_size'][0]}x"
        f"{src['image_size'][1]}, {src['images_per_batch']} images per batch (train: "
        f"{settings['rois_per_image']} RoIs/image at 7x7, positives at 14x14; inference: "
        f"{settings['proposals_per_image']} proposals, {settings['detections_per_image']} "
        f"detections per image), timed by `{layers['function']}`: {layers['reference']} against "
        f"{layers['candidate']}, {layers['dtype']} on {layers['device']}, medians of "
        f"{layers['repeats']}. \"× torch\" = fused time / torch time. Bandwidth: the fused op's "
        "traffic floor in bytes (the same bytes for torch), over the time, as a fraction of the "
        "copy bandwidth measured on the same tensor size.",
        "",
    ]
    lines += _table(headers, rows)
    lines += ["", f"Sum of time x calls over the recorded calls (one training forward + one "
              f"inference batch): forward {t['torch_infer_ms']:.1f} ms torch, "
              f"{t['fused_infer_ms']:.1f} ms fused; forward+backward {t['torch_train_ms']:.1f} ms "
              f"torch, {t['fused_train_ms']:.1f} ms fused."]
    return lines


def format_markdown(result: Dict) -> str:
    """The headline table, the scaling table and the layer tables of a benchmark result."""
    lines = _main_section(result) + [""] + _scaling_section(result)
    layer = _layer_section(result)
    if layer:
        lines += [""] + layer
    w = result["workload"]
    lines += [
        "",
        f"Workload: seed {w['seed']}, {w['instances_per_image']} instances per image (polygon "
        f"masks), {w['proposals_per_image']} fixed proposals per image, exactly "
        f"{w['rois_per_image']} sampled RoIs with {w['positive_rois_per_image']} positives per "
        f"image in training, {w['detections_per_image']} fixed detections per image into the mask "
        f"head at inference. Peak memory: growth from before the model is built to the peak of "
        f"{result['settings']['memory_train_steps']} training steps / "
        f"{result['settings']['memory_inference_steps']} inference call(s), one fresh process each.",
    ]
    return "\n".join(lines) + "\n"


def write_json(result: Dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


def read_json(path: str) -> Dict:
    with open(path) as f:
        return json.load(f)
