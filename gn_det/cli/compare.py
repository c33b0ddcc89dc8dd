"""Compare runs: one Markdown table of their ap_report.json side by side, and a PNG plot of AP
against a run setting, one line per value of another (default: AP vs images per GPU, per norm).

    gn-det-compare output/gn output/bn --plot compare.png
    gn-det-compare output/* --x ims_per_gpu --group norm.backbone --plot ap_vs_batch.png
"""
import argparse

from ..evaluation import comparison_markdown, load_runs, plot_comparison

__all__ = ["main"]


def main(argv=None):
    """``gn-det-compare``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="output directories (or ap_report.json files)")
    parser.add_argument("--dataset", default=None, help="dataset to compare (default: the first all runs share)")
    parser.add_argument("--plot", default="", metavar="PNG", help="write the plot here")
    parser.add_argument("--x", default="ims_per_gpu", help="setting on the x axis (e.g. ims_per_gpu, iteration, num_groups)")
    parser.add_argument("--group", default="norm.backbone", help="setting that makes one line per value")
    parser.add_argument("--metrics", nargs="+", default=["bbox/AP", "segm/AP"], help="TASK/METRIC to plot")
    parser.add_argument("--output", default="", metavar="MD", help="also write the table to this file")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.runs)
        table = comparison_markdown(runs, args.dataset)
        if args.plot:
            plot_comparison(runs, args.plot, x=args.x, group=args.group, metrics=args.metrics, dataset=args.dataset)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    print(table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table)
    if args.plot:
        print(f"plot written to {args.plot}")

