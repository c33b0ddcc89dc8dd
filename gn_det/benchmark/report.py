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


def _main_section(result: Dict) -> List[str]:
    s, dev = result["settings"], result["device"]
    main = next(r for r in result["rows"] if r["main"])
    keys = list(result["variants"])
    with_ratio = "to_a" in main["ratios"]
    h, w = main["image_size"]
    lines = [
        f"### Mask R-CNN R50-FPN 4conv1fc: {h}x{w} images, {main['images_per_batch']} per batch",
        "",
        f"{dev['name']} ({dev['type']}, {dev['threads']} threads), {result['started']}; torch "
        f"{dev['torch']}, detectron2 {dev['detectron2']}. Medians of {s['repeats']} repeats after "
        f"{s['warmup']} warm-up, [min–max]; variants interleaved. Load average at start/end: "
        f"{result['conditions']['load_average_start']} / {result['conditions']['load_average_end']}.",
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
            rows.append([size, str(row["images_per_batch"]), _variant_label(result, k)]
                        + _row_cells(result, row, k))
    lines = ["### Scaling: images per batch and image size", ""]
    lines += _table(["image size", "im/batch", "variant"] + _metric_headers(with_ratio), rows)
    c_to_b = [(row, row["ratios"].get("c_to_b")) for row in result["rows"]]
    if any(v for _, v in c_to_b):
        lines += ["", "(c) / (b) per row: " + "; ".join(
            f"{'x'.join(map(str, r['image_size']))} {r['images_per_batch']} im: train ×"
            f"{_ratio(v['train_step_s'])}, inference ×{_ratio(v['inference_s_per_image'])}"
            for r, v in c_to_b if v)]
    return lines


def _layer_table(layers: Dict, phase: str) -> List[str]:
    ref = layers["reference"]
    others = [n for n in layers["implementations"] if n != ref]
    headers = ["shape (N, C, H, W)", "G", "where", "calls"]
    for op in ("gn", "gn_relu"):
        label = "GN" if op == "gn" else "GN+ReLU"
        headers.append(f"{ref} {label} ms")
        for name in others:
            headers += [f"{name} {label} ms", f"× {ref}"]
        headers.append(f"{label} of copy BW ({', '.join([ref] + others)})")
    rows = []
    totals = {(n, op): 0.0 for n in layers["implementations"] for op in ("gn", "gn_relu")}
    for shape in layers["shapes"]:
        cells = [str(tuple(shape["shape"])), str(shape["num_groups"]), ", ".join(shape["where"]),
                 str(shape["calls_per_step"])]
        for op in ("gn", "gn_relu"):
            case = f"{op}_{phase}"
            res = shape["results"]
            cells.append(f"{res[ref][case]['median_s'] * 1e3:.2f}")
            for name in others:
                cells += [f"{res[name][case]['median_s'] * 1e3:.2f}",
                          f"{res[name][case]['ratio_to_reference']:.2f}"]
            cells.append(" / ".join(f"{res[n][case]['fraction_of_copy_bandwidth']:.2f}"
                                    for n in [ref] + others))
            for n in layers["implementations"]:
                totals[(n, op)] += res[n][case]["median_s"] * shape["calls_per_step"]
        rows.append(cells)
    lines = _table(headers, rows)
    lines += ["", "Sum over the recorded calls (one training forward + one inference batch), ms: "
              + "; ".join(f"{n} {'GN' if op == 'gn' else 'GN+ReLU'} {t * 1e3:.1f}"
                          for (n, op), t in totals.items()) + "."]
    return lines


def _layer_section(result: Dict) -> List[str]:
    layers = result.get("layers")
    if not layers:
        return []
    src = layers["shapes_from"]
    lines = [
        "### GN layers on R50-FPN Mask R-CNN's shapes",
        "",
        f"Shapes recorded from variant ({src['variant']}) at {src['image_size'][0]}x"
        f"{src['image_size'][1]}, {src['images_per_batch']} images per batch (train: "
        f"{result['settings']['rois_per_image']} RoIs/image at 7x7, positives at 14x14; inference: "
        f"{result['settings']['proposals_per_image']} proposals, "
        f"{result['settings']['detections_per_image']} detections per image). {layers['dtype']} on "
        f"{layers['device']}; copy bandwidth {layers['copy_bandwidth_gb_per_s']:.1f} GB/s. Medians of "
        f"{layers['repeats']} repeats. Bandwidth fraction = compulsory traffic "
        "(forward 2x, forward+backward 5x the tensor) / time / copy bandwidth.",
        "",
        "Forward + backward:",
        "",
    ]
    lines += _layer_table(layers, "fwd_bwd")
    lines += ["", "Forward only (inference):", ""]
    lines += _layer_table(layers, "fwd")
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
