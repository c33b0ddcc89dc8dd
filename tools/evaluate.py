#!/usr/bin/env python3
"""``gn-det-evaluate`` from a clone: the command line is gn_det/cli/evaluate.py (``--help`` shows it)."""
import sys

from gn_det.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
