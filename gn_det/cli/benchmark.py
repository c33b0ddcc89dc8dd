"""gn_det's benchmarks, one command line, six sub-commands:

    gn-det-benchmark model --quick          # the whole model, BN*/D2 GN/gn_det GN/GN+WS
    gn-det-benchmark model --device cpu --freeze-at 2 0 --threads 1
    gn-det-benchmark layers --device cpu    # GN+ReLU layers and the GN box head, fused vs not
    gn-det-benchmark validation             # COCO validation throughput, safe checkpoint save
    gn-det-benchmark coco-data              # generate the train2017/val2017-sized COCO workload
    gn-det-benchmark coco-eval              # COCO evaluation at val2017 size vs Detectron2's
    gn-det-benchmark startup                # validation and time to the first iteration at
                                            # train2017 size vs Detectron2's own

Without a sub-command it is ``model`` (``gn-det-benchmark --quick`` works as before). Every
sub-command times with gn_det.benchmark.timing and measures memory with gn_det.benchmark.memory
(peak RSS or CUDA peak, in a fresh process). ``gn-det-benchmark <sub-command> -h`` lists its
options.
"""
import argparse
import sys

import torch

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS = ("model", "layers", "validation", "coco-data", "coco-eval", "startup")


def _size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must be HxW, e.g. 480x800; got {text!r}")
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return (h, w)


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda[:N] (default: cuda when available)")
    p.add_argument("--quick", action="store_true",
                   help="tiny images and RoI counts, 2 repeats: checks the harness, not the numbers")
    p.add_argument("--variants", nargs="+", help="subset of a b c d (default: all)")
    p.add_argument("--sizes", nargs="+", type=_size,
                   help="image sizes HxW; the first is the main one (CPU default: 384x640 256x416; GPU: 800x1333 600x1000)")
    p.add_argument("--ims", nargs="+", type=int, help="images per batch at the main size (default 1 2 4)")
    p.add_argument("--main-ims", type=int, help="images per batch of the main row (default 2)")
    p.add_argument("--freeze-at", nargs="+", type=int,
                   help="MODEL.BACKBONE.FREEZE_AT of the rows, each a set of rows (default 2; "
                        "0 trains the stem and res2, whose GN layers see the largest tensors)")
    p.add_argument("--arch", choices=("R50-FPN", "R18-FPN"),
                   help="the model of every variant: R50-FPN (default) or the embedded R18-FPN "
                        "(configs/Synthetic' widths: ResNet-18, FPN and heads 64 wide)")
    p.add_argument("--warmup", type=int, help="warm-up repeats, discarded")
    p.add_argument("--repeats", type=int, help="measured repeats (medians, min, max)")
    p.add_argument("--threads", type=int,
                   help="torch threads, in the timing process and every memory process; recorded "
                        "in the JSON (default: torch's, all cores; --quick: 1)")
    p.add_argument("--seed", type=int, help="workload and initialization seed (default 0)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--no-layers", action="store_true", help="skip the layer-level microbenchmark")
    p.add_argument("--layer-size", type=_size, help="image size whose GN shapes are benchmarked "
                   "(default 800x1333, Detectron2's training size)")
    p.add_argument("--layer-repeats", type=int, help="repeats of each layer shape (default 5)")
    p.add_argument("--output", help="JSON path (default output/benchmark/<device>[_quick].json)")
    p.add_argument("--markdown", help="also write the Markdown tables to this path")
    p.add_argument("--from-json", metavar="PATH",
                   help="measure nothing: print the tables of a saved result (ratios recomputed; "
                        "with --output, also write the refreshed JSON)")


def _run_model(args) -> int:
    from ..benchmark import (
        BenchmarkSettings,
        format_markdown,
        read_json,
        refresh_ratios,
        run_benchmark,
        write_json,
    )

    if args.from_json:
        result = refresh_ratios(read_json(args.from_json))
        if args.output:
            write_json(result, args.output)
        _emit(format_markdown(result), args.markdown)
        return 0

    try:
        settings = BenchmarkSettings.for_device(
            args.device, quick=args.quick,
            variants=tuple(args.variants) if args.variants else None,
            image_sizes=tuple(args.sizes) if args.sizes else None,
            images_per_batch=tuple(args.ims) if args.ims else None,
            main_images_per_batch=args.main_ims, warmup=args.warmup, repeats=args.repeats,
            threads=args.threads, seed=args.seed, layer_image_size=args.layer_size,
            layer_repeats=args.layer_repeats,
            freeze_at=tuple(args.freeze_at) if args.freeze_at else None, arch=args.arch,
            memory=False if args.no_memory else None, layers=False if args.no_layers else None,
        )
    except (ValueError, KeyError) as e:
        print(f"benchmark: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    result = run_benchmark(settings, log=lambda m: print(m, file=sys.stderr, flush=True))
    output = args.output or f"output/benchmark/{args.device.replace(':', '')}{'_quick' if args.quick else ''}.json"
    write_json(result, output)
    _emit(format_markdown(result), args.markdown)
    print(f"JSON: {output}", file=sys.stderr)
    return 0


def _run_layers(args) -> int:
    from ..benchmark import layer_timing

    if args.repeats < 1 or args.rois < 1 or args.image_size < 1 or args.images < 1:
        print("benchmark layers: --repeats, --rois, --image-size and --images must be >= 1",
              file=sys.stderr)
        return 2
    layer_timing.run(args)
    return 0


def _run_validation(args) -> int:
    from ..benchmark import validation_cost

    try:
        validation_cost.run(args)
    except ValueError as e:
        print(f"benchmark validation: {e}", file=sys.stderr)
        return 2
    return 0


def _run_coco_data(args) -> int:
    from ..benchmark.coco_scale_data import TRAIN2017, VAL2017, scaled_spec, write_split
    from ..benchmark.coco_scale_detections import write_detections

    for spec in (TRAIN2017, VAL2017):
        if spec.split not in args.splits:
            continue
        spec, root = scaled_spec(spec, args.dir, args.scale)
        info = write_split(root, spec)
        print(f"{spec.split}: {info['images']} images, {info['annotations']} annotations ({info['crowd']} crowd), "
              f"{info['polygons']} polygons, {info['vertices']} vertices, json {info['json_bytes'] / 2**20:.0f} MiB: "
              f"{info['json_file']}")
        if spec.split == "val2017":
            dets = write_detections(info["json_file"], f"{root}/detections_{spec.split}.json")
            print(f"detections: {dets['detections']} for {dets['images']} images: {dets['path']}")
    return 0


def _run_module(module_name: str):
    def run(args) -> int:
        import importlib

        try:
            importlib.import_module(f"gn_det.benchmark.{module_name}").run(args)
        except ValueError as e:
            print(f"benchmark: {e}", file=sys.stderr)
            return 2
        return 0

    return run


def _coco_scale_doc() -> str:
    from ..benchmark import coco_scale_data

    return coco_scale_data.__doc__.split("\n\n")[0]


def build_parser() -> argparse.ArgumentParser:
    from ..benchmark import coco_eval_bench, layer_timing, startup_bench, validation_cost

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    model = sub.add_parser("model", help="whole-model benchmark (the default)",
                           description="Mask R-CNN R50-FPN (or --arch R18-FPN): (a) BN*, (b) Detectron2 GN, (c) gn_det GN, "
                                       "(d) gn_det GN+WS, side by side; Markdown tables and JSON.")
    _add_model_arguments(model)
    model.set_defaults(func=_run_model)
    layers = sub.add_parser("layers", help="GN+ReLU layers and the GN box head, fused vs nn.GroupNorm",
                            description=layer_timing.__doc__.split("\n\n")[0])
    layer_timing.add_arguments(layers)
    layers.set_defaults(func=_run_layers)
    validation = sub.add_parser("validation", help="COCO validation throughput and checkpoint-save cost",
                                description=validation_cost.__doc__.split("\n\n")[0])
    validation_cost.add_arguments(validation)
    validation.set_defaults(func=_run_validation)
    data = sub.add_parser("coco-data", help="generate the COCO-sized workload (train2017/val2017-sized jsons, "
                          "images, detections)", description=_coco_scale_doc())
    data.add_argument("--dir", default="output/coco_scale", help="root of the data (Detectron2's layout: DIR/coco/...)")
    data.add_argument("--splits", nargs="+", default=["train2017", "val2017"], choices=["train2017", "val2017"])
    data.add_argument("--scale", type=float, default=1.0, help="fraction of the real sizes (written under DIR/scale_F)")
    data.set_defaults(func=_run_coco_data)
    for name, module, text in (("coco-eval", coco_eval_bench, "COCO evaluation at val2017 size, side by side"),
                               ("startup", startup_bench, "validation and time to the first iteration at "
                                                          "train2017 size, vs Detectron2's own")):
        p = sub.add_parser(name, help=text, description=module.__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(func=_run_module(module.__name__.rsplit(".", 1)[1]))
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS + ("-h", "--help"):
        argv = ["model"] + argv  # the command line before sub-commands existed
    from ..third_party_warnings import ignore_third_party_warnings

    ignore_third_party_warnings()  # the known-harmless ones only (gn_det/third_party_warnings.py)
    args = build_parser().parse_args(argv)
    return args.func(args)


def _emit(markdown: str, path) -> None:
    if path:
        with open(path, "w") as f:
            f.write(markdown)
    print(markdown)

