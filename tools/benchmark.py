#!/usr/bin/env python3
"""Benchmark the cost of GN in Mask R-CNN R50-FPN: (a) BN*, (b) Detectron2 GN, (c) gn_det GN,
(d) gn_det GN+WS, side by side. Prints Markdown tables and writes the JSON result.

    python3 tools/benchmark.py --quick                # a few minutes on CPU
    python3 tools/benchmark.py --device cpu           # the full CPU table (about 45 minutes at --threads 1)
    python3 tools/benchmark.py --device cuda          # the full GPU table
"""
import argparse
import sys

import torch


def _size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must be HxW, e.g. 480x800; got {text!r}")
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return (h, w)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda[:N] (default: cuda when available)")
    p.add_argument("--quick", action="store_true",
                   help="tiny images and RoI counts, 2 repeats: checks the harness, not the numbers")
    p.add_argument("--variants", nargs="+", help="subset of a b c d (default: all)")
    p.add_argument("--sizes", nargs="+", type=_size,
                   help="image sizes HxW; the first is the main one (CPU default: 384x640 256x416; GPU: 800x1333 600x1000)")
    p.add_argument("--ims", nargs="+", type=int, help="images per batch at the main size (default 1 2 4)")
    p.add_argument("--main-ims", type=int, help="images per batch of the main row (default 2)")
    p.add_argument("--warmup", type=int, help="warm-up repeats, discarded")
    p.add_argument("--repeats", type=int, help="measured repeats (medians, min, max)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, all cores)")
    p.add_argument("--seed", type=int, help="workload and initialization seed (default 0)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--no-layers", action="store_true", help="skip the layer-level microbenchmark")
    p.add_argument("--layer-size", type=_size, help="image size whose GN shapes are benchmarked "
                   "(default 800x1333, Detectron2's training size)")
    p.add_argument("--output", help="JSON path (default output/benchmark/<device>[_quick].json)")
    p.add_argument("--markdown", help="also write the Markdown tables to this path")
    p.add_argument("--from-json", metavar="PATH",
                   help="measure nothing: print the tables of a saved result (ratios recomputed; "
                        "with --output, also write the refreshed JSON)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import gn_det  # noqa: F401  registers gn_det's modules
    from gn_det.benchmark import (
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


def _emit(markdown: str, path) -> None:
    if path:
        with open(path, "w") as f:
            f.write(markdown)
    print(markdown)


if __name__ == "__main__":
    sys.exit(main())
