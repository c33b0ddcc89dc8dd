#!/usr/bin/env python3
"""``gn-det-visualize`` from a clone: the command line is gn_det/cli/visualize.py (``--help`` shows it)."""
import sys

from gn_det.cli.visualize import main

if __name__ == "__main__":
    sys.exit(main())
