#!/usr/bin/env python3
"""Export a trained checkpoint to TorchScript or ONNX (standard ops only: it runs where gn_det is
not installed), then verify it against the eager model and time both.

    python3 tools/export_model.py --weights output/main/model_final.pth --output output/main/export
    python3 tools/export_model.py --weights W.pth --format onnx --sample-image a.png --output out/
    python3 tools/export_model.py --weights W.pth --export-method scripting --output out/

Detectron2's tools/deploy/export_model.py flags; the config defaults to the config.yaml next to
the checkpoint. Exits 1 when the artifact's detections differ past the stated tolerance.
"""

import sys

import gn_det  # noqa: F401  registers gn_det's models and datasets
from gn_det.export.cli import export_main

if __name__ == "__main__":
    sys.exit(export_main())
