#!/usr/bin/env python3
"""``gn-det-train`` from a clone: the command line is gn_det/cli/train.py (``--help`` shows it)."""
import sys

from gn_det.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
