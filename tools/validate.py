#!/usr/bin/env python3
"""``gn-det-validate`` from a clone: the command line is gn_det/cli/validate.py (``--help`` shows it)."""
import sys

from gn_det.cli.validate import main

if __name__ == "__main__":
    sys.exit(main())
