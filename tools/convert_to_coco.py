#!/usr/bin/env python3
"""``gn-det-convert-to-coco`` from a clone: the command line is gn_det/cli/convert_to_coco.py (``--help`` shows it)."""
import sys

from gn_det.cli.convert_to_coco import main

if __name__ == "__main__":
    sys.exit(main())
