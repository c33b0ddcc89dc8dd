#!/usr/bin/env python3
"""``gn-det-compare`` from a clone: the command line is gn_det/cli/compare.py (``--help`` shows it)."""
import sys

from gn_det.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
