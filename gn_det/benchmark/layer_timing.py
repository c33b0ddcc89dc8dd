"""Microbenchmarks of GroupNorm(+ReLU): fused vs torch, time, bandwidth and memory.

``benchmark_group_norm(shapes, device)`` times one GN+ReLU layer, torch's ``nn.GroupNorm`` then
``ReLU`` against gn_det's fused op, on the activation shapes of a Mask R-CNN R50-FPN training
step (``MASK_RCNN_R50_FPN_SHAPES``), and reports the fused op's achieved bandwidth against a
measured copy (``clone``) bandwidth. ``training_step_memory(model, inputs, meter)`` measures one
forward+backward with the benchmark's memory meter (``memory.PeakMemory``): the peak, and what
the forward kept for backward; ``gn_head_comparison`` and ``model_comparison`` run it in fresh
processes, with step times, on Detectron2's GN box head and on a whole model built from a gn_det
config, fused vs unfused. Times come from the one timing helper (``timing.interleaved``).

Command line (``python -m gn_det.benchmark.layer_timing`` takes the same options)::

    python3 tools/benchmark.py layers --device cpu           # layers + box head
    python3 tools/benchmark.py layers --device cpu --skip-layers \
        --model-config configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_gn.yaml
"""

import argparse
import statistics
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import group_norm_act
from ..model_zoo import config_file_argument
from .memory import PeakMemory, measure_in_fresh_process
from .timing import TIMERS, interleaved

__all__ = [
    "MASK_RCNN_R50_FPN_SHAPES",
    "benchmark_group_norm",
    "copy_bandwidth",
    "training_step_memory",
    "gn_head_comparison",
    "model_comparison",
    "format_table",
]

# (name, (N, C, H, W), groups) of the GN layers in a Mask R-CNN R50-FPN training step at
# 800x1333 (padded to 800x1344), 2 images per GPU, 32 groups; RoI heads with 512 RoIs.
MASK_RCNN_R50_FPN_SHAPES: List[Tuple[str, Tuple[int, int, int, int], int]] = [
    ("stem conv1 (s2)", (2, 64, 400, 672), 32),
    ("res2 conv1/2", (2, 64, 200, 336), 32),
    ("res2 conv3", (2, 256, 200, 336), 32),
    ("res3 conv1/2", (2, 128, 100, 168), 32),
    ("res3 conv3", (2, 512, 100, 168), 32),
    ("res4 conv1/2", (2, 256, 50, 84), 32),
    ("res4 conv3", (2, 1024, 50, 84), 32),
    ("res5 conv1/2", (2, 512, 25, 42), 32),
    ("res5 conv3", (2, 2048, 25, 42), 32),
    ("FPN P2", (2, 256, 200, 336), 32),
    ("FPN P3", (2, 256, 100, 168), 32),
    ("FPN P4", (2, 256, 50, 84), 32),
    ("FPN P5", (2, 256, 25, 42), 32),
    ("box head 512 RoIs 7x7", (512, 256, 7, 7), 32),
    ("mask head 512 RoIs 14x14", (512, 256, 14, 14), 32),
]

# Full-tensor passes (reads + writes) of the fused op at its memory-traffic floor.
_PASSES_FORWARD = 3  # read x for statistics; read x, write y
_PASSES_TRAIN = 3 + 2 + 5  # forward; recompute y for the next layer (read x, write y);
# backward (read dy, x for the sums; read dy, x, write dx)


def _median_ms(
    fns: Dict[str, Callable[[], object]], device: torch.device, repeats: int, timer: str = "auto"
) -> Dict[str, float]:
    """Median milliseconds of each function, interleaved after one warm-up round, so that
    drifting load on a shared machine affects all of them alike."""
    samples = interleaved(fns, repeats, warmup=1, device=device, timer=timer)
    return {name: statistics.median(t) * 1e3 for name, t in samples.items()}


def copy_bandwidth(numel: int, device, dtype=torch.float32, repeats: int = 5, timer: str = "auto") -> float:
    """Measured copy bandwidth in GB/s (``clone`` of ``numel`` elements: one read, one write)."""
    device = torch.device(device)
    x = torch.empty(numel, device=device, dtype=dtype).uniform_()
    ms = _median_ms({"copy": lambda: x.clone()}, device, repeats, timer)["copy"]
    return 2 * numel * x.element_size() / (ms * 1e-3) / 1e9


def benchmark_group_norm(
    shapes: Sequence[Tuple[str, Sequence[int], int]],
    device,
    dtype: torch.dtype = torch.float32,
    memory_format: torch.memory_format = torch.contiguous_format,
    repeats: int = 5,
    backend: str = "auto",
    timer: str = "auto",
) -> List[Dict[str, object]]:
    """Time GN+ReLU, torch (``nn.GroupNorm`` then ``F.relu``) vs fused, for each shape.

    Args:
        shapes: ``(name, (N, C, H, W), groups)`` triples, e.g. ``MASK_RCNN_R50_FPN_SHAPES``.
        device: "cpu" or "cuda".
        dtype, memory_format: of the input (fp16/bf16 use fp32 affine parameters, as under AMP).
        repeats: timed repetitions; medians are reported (shared machines are noisy).
        backend: the fused op's backend ("auto": Triton on CUDA when available).
        timer: "wall", "process" (CPU time of this process, robust on shared machines) or
            "auto" (wall on CUDA, process on CPU). Bandwidths use the same clock.

    Returns:
        One dict per shape with median milliseconds — ``torch_infer_ms``/``fused_infer_ms``
        (no grad forward) and ``torch_train_ms``/``fused_train_ms`` (forward + backward; the
        fused one includes recomputing the output for the next layer's backward) — their ratios
        (``*_speedup`` = torch / fused), the fused op's achieved bandwidth ``fused_train_gbps``
        at its traffic floor and ``copy_gbps`` measured on the same tensor size.
    """
    device = torch.device(device)
    rows = []
    for name, shape, groups in shapes:
        n, c = shape[0], shape[1]
        x = torch.randn(*shape, device=device, dtype=dtype).contiguous(memory_format=memory_format)
        dy = torch.randn_like(x)
        gn = nn.GroupNorm(groups, c).to(device)
        if dtype in (torch.float16, torch.bfloat16) and device.type == "cpu":
            gn = gn.to(dtype)  # CPU nn.GroupNorm wants matching dtypes
        weight, bias = gn.weight, gn.bias
        xg = x.detach().requires_grad_()

        def torch_infer():
            with torch.no_grad():
                return F.relu(gn(x))

        def fused_infer():
            with torch.no_grad():
                return group_norm_act(x, weight, bias, groups, gn.eps, "relu", backend)

        def torch_train():
            F.relu(gn(xg)).backward(dy)

        def fused_train():
            y = group_norm_act(xg, weight, bias, groups, gn.eps, "relu", backend)
            state = getattr(y, "_gn_det_group_norm_act")
            state.recompute()  # what the next conv's backward asks for
            y.backward(dy)

        row = {"name": name, "shape": tuple(shape), "groups": groups}
        fns = dict(
            torch_infer=torch_infer, fused_infer=fused_infer, torch_train=torch_train, fused_train=fused_train
        )
        row.update({f"{k}_ms": v for k, v in _median_ms(fns, device, repeats, timer).items()})
        row["infer_speedup"] = row["torch_infer_ms"] / row["fused_infer_ms"]
        row["train_speedup"] = row["torch_train_ms"] / row["fused_train_ms"]
        nbytes = x.numel() * x.element_size()
        row["fused_infer_gbps"] = _PASSES_FORWARD * nbytes / (row["fused_infer_ms"] * 1e-3) / 1e9
        row["fused_train_gbps"] = _PASSES_TRAIN * nbytes / (row["fused_train_ms"] * 1e-3) / 1e9
        row["copy_gbps"] = copy_bandwidth(x.numel(), device, dtype, repeats, timer)
        rows.append(row)
        del x, dy, xg
    return rows


# ---------------------------------------------------------------------------------------------
# Memory of one training step.
# ---------------------------------------------------------------------------------------------


def training_step_memory(model: nn.Module, inputs: Sequence[torch.Tensor], meter: PeakMemory) -> Dict[str, int]:
    """Memory of one training step, ``model(*inputs)`` then backward of its summed output.

    Returns ``{"peak_bytes", "after_forward_bytes"}``: the peak during the step, and what is in
    use when backward starts (the activations kept for backward, plus the output), both above
    what was in use before it (parameters, their ``.grad`` buffers, allocated here first, and
    the inputs). Run it in a fresh process on CPU: RSS also counts memory freed earlier in the
    process and kept by the allocator.
    """
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)  # backward accumulates into them: nothing new to allocate
    meter.start()
    out = model(*inputs)
    loss = sum(o.float().sum() for o in (out if isinstance(out, (list, tuple)) else [out]))
    meter.mark("after_forward")
    loss.backward()
    result = meter.result()
    return {"peak_bytes": result["peak_growth_bytes"], "after_forward_bytes": result["marks_bytes"]["after_forward"]}


def _box_head(fused: bool, channels: int, resolution: int, device) -> nn.Module:
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.roi_heads.box_head import FastRCNNConvFCHead

    from ..layers import GNSettings, apply_conv_settings, build_norm_factory

    torch.manual_seed(0)
    settings = GNSettings(fused=fused)
    m = FastRCNNConvFCHead(
        ShapeSpec(channels=channels, height=resolution, width=resolution),
        conv_dims=[channels] * 4,
        fc_dims=[1024],
        conv_norm=build_norm_factory("GN", settings, "MODEL.ROI_BOX_HEAD.NORM"),
    )
    return apply_conv_settings(m, settings).to(device)


def box_head_memory(meter: PeakMemory, fused: bool, num_rois: int, channels: int, resolution: int,
                    device: str) -> Dict[str, int]:
    """Fresh-process target: ``training_step_memory`` of the GN box head."""
    head = _box_head(fused, channels, resolution, device)
    x = torch.randn(num_rois, channels, resolution, resolution, device=device, requires_grad=True)
    return training_step_memory(head, [x], meter)


def _fresh_memory(target: str, device, what: str, **kwargs) -> Dict[str, Dict[str, int]]:
    """``{"unfused": ..., "fused": ...}`` memory of a target, one fresh process each."""
    return {
        name: measure_in_fresh_process(target, dict(kwargs, fused=fused, device=str(device)),
                                       device=str(device), threads=torch.get_num_threads(),
                                       what=f"{what}, {name}")
        for name, fused in (("unfused", False), ("fused", True))
    }


def gn_head_comparison(
    num_rois: int = 512,
    channels: int = 256,
    resolution: int = 7,
    device="cpu",
    repeats: int = 0,
    timer: str = "auto",
) -> Dict[str, float]:
    """Detectron2's 4conv1fc box head with GN, unfused (``nn.GroupNorm`` then ``ReLU``) vs fused
    (``apply_conv_settings`` with ``fused=True``): memory of one training step and, if
    ``repeats`` > 0, median times of a training step and of inference.

    The head is Detectron2's own ``FastRCNNConvFCHead`` (built by its constructor with a GN norm
    factory), so this measures the fused path exactly where gn_det plugs it in.
    Returns unfused and fused ``peak_bytes`` and ``after_forward_bytes`` (see
    ``training_step_memory``), ``train_ms`` and ``infer_ms`` when timed, and each ratio
    (``*_ratio`` = fused / unfused).
    """
    device = torch.device(device)
    result = {}
    memory = _fresh_memory("gn_det.benchmark.layer_timing:box_head_memory", device, "GN box head",
                           num_rois=num_rois, channels=channels, resolution=resolution)
    for name, values in memory.items():
        for key in ("peak_bytes", "after_forward_bytes"):
            result[f"{name}_{key}"] = values[key]
    heads = {name: _box_head(name == "fused", channels, resolution, device) for name in ("unfused", "fused")}
    x = torch.randn(num_rois, channels, resolution, resolution, device=device, requires_grad=True)
    keys = ["peak_bytes", "after_forward_bytes"]
    if repeats > 0:

        def train(m):
            return lambda: m(x).sum().backward()

        def infer(m):
            def run():
                with torch.no_grad():
                    m(x)

            return run

        fns = {}
        for name, m in heads.items():
            fns[f"{name}_train_ms"] = train(m)
            fns[f"{name}_infer_ms"] = infer(m)
        result.update(_median_ms(fns, device, repeats, timer))
        keys += ["train_ms", "infer_ms"]
    for key in keys:
        result[f"{key.rsplit('_', 1)[0]}_ratio"] = result[f"fused_{key}"] / result[f"unfused_{key}"]
    return result


def _synthetic_batch(num_images: int, size: int, device) -> List[Dict[str, object]]:
    """Detectron2 training inputs: random ``size`` x ``size`` images, 2 boxes with masks each."""
    from detectron2.structures import BitMasks, Boxes, Instances

    generator = torch.Generator().manual_seed(0)
    batch = []
    for _ in range(num_images):
        xy = torch.rand(2, 2, generator=generator) * size / 2
        boxes = torch.cat([xy, xy + size / 4 + torch.rand(2, 2, generator=generator) * size / 4], dim=1)
        masks = torch.zeros(2, size, size, dtype=torch.bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
            masks[i, y0:y1, x0:x1] = True
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(boxes)
        instances.gt_classes = torch.tensor([0, 1])
        instances.gt_masks = BitMasks(masks)
        image = torch.rand(3, size, size, generator=generator) * 255
        batch.append({"image": image.to(device), "instances": instances.to(device)})
    return batch


def _build_model(config_file: str, fused: bool, device) -> nn.Module:
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from ..config import add_gn_config

    cfg = get_cfg()
    add_gn_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.MODEL.DEVICE = str(device)
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.GN.FUSED = fused
    torch.manual_seed(0)
    return build_model(cfg).train()


class _Losses(nn.Module):
    """A Detectron2 model's training losses on a fixed batch, as a module of a dummy input."""

    def __init__(self, model, batch):
        super().__init__()
        self.model = model
        self.batch = batch

    def forward(self, _):
        torch.manual_seed(0)  # the same proposals sampled in every run
        return list(self.model(self.batch).values())


def whole_model_memory(meter: PeakMemory, config_file: str, fused: bool, image_size: int,
                       num_images: int, device: str) -> Dict[str, int]:
    """Fresh-process target: ``training_step_memory`` of a whole model from a gn_det config."""
    from detectron2.utils.events import EventStorage

    model = _build_model(config_file, fused, device)
    batch = _synthetic_batch(num_images, image_size, device)
    with EventStorage():  # Detectron2's losses log into one
        return training_step_memory(_Losses(model, batch), [torch.zeros(1, device=device)], meter)


def model_comparison(
    config_file: str,
    image_size: int = 512,
    num_images: int = 2,
    repeats: int = 3,
    device="cpu",
    timer: str = "auto",
) -> Dict[str, float]:
    """A whole Detectron2 model from a gn_det config, ``MODEL.GN.FUSED`` False vs True (same
    weights, same synthetic batch): memory of one training step (``training_step_memory``, in a
    fresh process each) and median times of a training step and of inference. Keys as in
    ``gn_head_comparison``."""
    from detectron2.utils.events import EventStorage

    device = torch.device(device)
    result = {}
    memory = _fresh_memory("gn_det.benchmark.layer_timing:whole_model_memory", device, config_file,
                           config_file=config_file, image_size=image_size, num_images=num_images)
    for name, values in memory.items():
        for key in ("peak_bytes", "after_forward_bytes"):
            result[f"{name}_{key}"] = values[key]
    models = {"unfused": _build_model(config_file, False, device), "fused": _build_model(config_file, True, device)}
    models["fused"].load_state_dict(models["unfused"].state_dict())
    batch = _synthetic_batch(num_images, image_size, device)

    def train(model):
        def run():
            torch.manual_seed(0)
            sum(model(batch).values()).backward()

        return run

    def infer(model):
        def run():
            model.eval()
            with torch.no_grad():
                model([{"image": b["image"]} for b in batch])
            model.train()

        return run

    with EventStorage():  # Detectron2's losses log into one
        fns = {}
        for name, model in models.items():
            fns[f"{name}_train_ms"] = train(model)
            fns[f"{name}_infer_ms"] = infer(model)
        result.update(_median_ms(fns, device, repeats, timer))
    for key in ("peak_bytes", "after_forward_bytes", "train_ms", "infer_ms"):
        result[f"{key.rsplit('_', 1)[0]}_ratio"] = result[f"fused_{key}"] / result[f"unfused_{key}"]
    return result


def _comparison_table(result: Dict[str, float]) -> str:
    mib = 2.0**20
    rows = [
        ("kept for backward (MiB)", "after_forward_bytes", mib, "after_forward_ratio"),
        ("peak of a training step (MiB)", "peak_bytes", mib, "peak_ratio"),
        ("training step (ms)", "train_ms", 1.0, "train_ratio"),
        ("inference (ms)", "infer_ms", 1.0, "infer_ratio"),
    ]
    lines = ["| | unfused | fused | fused / unfused |", "|---|---|---|---|"]
    for label, key, scale, ratio in rows:
        if f"fused_{key}" in result:
            lines.append(
                f"| {label} | {result[f'unfused_{key}'] / scale:.1f} | {result[f'fused_{key}'] / scale:.1f} | "
                f"{result[ratio]:.3f} |"
            )
    return "\n".join(lines)


def format_table(rows: List[Dict[str, object]]) -> str:
    header = (
        "| layer | shape | torch infer ms | fused infer ms | infer x | torch train ms | "
        "fused train ms | train x | fused train GB/s | copy GB/s | % of copy |"
    )
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['name']} | {'x'.join(map(str, r['shape']))} | {r['torch_infer_ms']:.2f} | "
            f"{r['fused_infer_ms']:.2f} | {r['infer_speedup']:.2f} | {r['torch_train_ms']:.2f} | "
            f"{r['fused_train_ms']:.2f} | {r['train_speedup']:.2f} | {r['fused_train_gbps']:.1f} | "
            f"{r['copy_gbps']:.1f} | {100 * r['fused_train_gbps'] / r['copy_gbps']:.0f}% |"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tools/benchmark.py layers`` (and ``python -m gn_det.benchmark.layer_timing``)."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--timer", default="auto", choices=TIMERS, help="auto: wall on CUDA, process CPU time on CPU"
    )
    parser.add_argument("--rois", type=int, default=512, help="RoIs in the box-head comparison")
    parser.add_argument("--skip-layers", action="store_true", help="skip the per-layer table")
    parser.add_argument(
        "--model-config", default="", type=config_file_argument,
        help="a gn_det YAML (a file, or an installed config's name): compare the whole model instead of the box head"
    )
    parser.add_argument("--image-size", type=int, default=512, help="with --model-config")
    parser.add_argument("--images", type=int, default=2, help="with --model-config")
    parser.add_argument("--only", default="", help="comma-separated substrings of layer names to run")


def run(args: argparse.Namespace) -> None:
    """Print the layer table and the box-head (or ``--model-config``) comparison."""
    shapes = MASK_RCNN_R50_FPN_SHAPES
    if args.only:
        keys = [k.strip() for k in args.only.split(",")]
        shapes = [s for s in shapes if any(k in s[0] for k in keys)]
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    timer = args.timer if args.timer != "auto" else ("wall" if args.device.startswith("cuda") else "process")
    if not args.skip_layers:
        rows = benchmark_group_norm(
            shapes, args.device, getattr(torch, args.dtype), fmt, args.repeats, timer=timer
        )
        print(
            f"GN(32)+ReLU, {args.device}, {args.dtype}, {'channels-last' if args.channels_last else 'NCHW'}, "
            f"median of {args.repeats}, {timer} time; x = torch time / fused time"
        )
        print(format_table(rows))
    if args.model_config:
        result = model_comparison(
            args.model_config, args.image_size, args.images, args.repeats, args.device, timer
        )
        print(
            f"\n{args.model_config}, {args.images} images of {args.image_size}x{args.image_size}, "
            f"{timer} time, median of {args.repeats}:"
        )
        print(_comparison_table(result))
        return
    head = gn_head_comparison(num_rois=args.rois, device=args.device, repeats=args.repeats, timer=timer)
    print(
        f"\n4conv1fc GN box head (Detectron2's FastRCNNConvFCHead), {args.rois} RoIs x 256 x 7x7, "
        f"{timer} time, median of {args.repeats}:"
    )
    print(_comparison_table(head))


def main(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
