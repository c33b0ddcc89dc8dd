#!/usr/bin/env python3
"""Norm x images-per-GPU sweep: box/mask AP against the per-GPU batch, one line per norm.

    python3 tools/sweep.py --norms BN 'BN*' GN --images-per-gpu 1 2 4 --output-dir output/sweep
    python3 tools/sweep.py --output-dir output/sweep --plot-only    # re-render table and plot

Rerunning a command resumes it: finished cells are kept, interrupted ones continue from their last
checkpoint. See README.md ("The norm x images-per-GPU sweep").
"""

import sys

from gn_det.sweep.cli import sweep_main

if __name__ == "__main__":
    sys.exit(sweep_main())
