#!/usr/bin/env python3
"""``gn-det-benchmark`` from a clone: the command line is gn_det/cli/benchmark.py (``--help`` shows it)."""
import sys

from gn_det.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
