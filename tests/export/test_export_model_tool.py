"""tools/export_model.py on a saved run: exports, verifies and times; refuses a class count that
does not fit; fails loudly when the artifact does not match."""

import json
import os
import subprocess
import sys

import cv2
import pytest
from detectron2.checkpoint import DetectionCheckpointer

from export_helpers import REPO, build_eval_model, image, synthetic_cfg

TOOL = os.path.join(REPO, "tools", "export_model.py")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as training leaves it: model_final.pth beside config.yaml; a sample PNG."""
    root = tmp_path_factory.mktemp("run")
    cfg = synthetic_cfg()
    cfg.INPUT.MIN_SIZE_TEST = cfg.INPUT.MAX_SIZE_TEST = 96
    model = build_eval_model(cfg)
    DetectionCheckpointer(model, str(root)).save("model_final")
    (root / "config.yaml").write_text(cfg.dump())
    cv2.imwrite(str(root / "sample.png"), image(96, 96).permute(1, 2, 0).numpy().astype("uint8"))
    return root


def _export(run_dir, output, *extra):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.run(
        [
            sys.executable,
            TOOL,
            "--weights",
            str(run_dir / "model_final.pth"),
            "--sample-image",
            str(run_dir / "sample.png"),
            "--repeats",
            "1",
            "--output",
            str(output),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(run_dir),
    )


# (flags, artifact, export method the tool picks). The default is torch.export; the dynamo ONNX
# exporter runs in test_torch_export.py (the same program, converted), not again here.
EXPORTS = {
    "default": ((), "model.pt2", "export"),
    "torchscript": (("--format", "torchscript"), "model.ts", "tracing"),
    "legacy onnx": (("--format", "onnx", "--export-method", "tracing"), "model.onnx", "tracing"),
}


@pytest.mark.parametrize("kind", list(EXPORTS))
def test_export_with_the_config_next_to_the_checkpoint_verifies_and_times(run_dir, tmp_path, kind):
    flags, name, method = EXPORTS[kind]
    done = _export(run_dir, tmp_path, *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "max |exported - eager|" in done.stdout and "verified: within tolerance" in done.stdout
    assert "time per image on this CPU" in done.stdout
    artifact = tmp_path / name
    assert artifact.is_file()
    info = json.loads((tmp_path / "export.json").read_text())
    check = info["verification"]
    assert info["export_method"] == method and info["artifact"] == name and sum(check["compared"]) > 0
    assert info["artifact_bytes"] == artifact.stat().st_size and info["export_seconds"] > 0
    # Only the path chosen by name says that torch deprecates it.
    assert ("deprecates TorchScript" in done.stdout + done.stderr) == (method != "export")
    assert all(check["max_abs_difference"][k] <= check["tolerance"][k] for k in check["max_abs_difference"])
    assert check["eager_ms_per_image"] > 0 and check["exported_ms_per_image"] > 0


def test_a_class_count_that_does_not_fit_the_checkpoint_refuses_to_export(run_dir, tmp_path):
    done = _export(run_dir, tmp_path, "MODEL.ROI_HEADS.NUM_CLASSES", "3")
    assert done.returncode != 0
    assert "refusing to export" in done.stderr and "another number of classes" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_format_and_method_that_do_not_go_together_are_refused(run_dir, tmp_path):
    done = _export(run_dir, tmp_path, "--format", "pt2", "--export-method", "scripting")
    assert done.returncode == 2 and "--format pt2 is written by --export-method export" in done.stderr


def test_onnx_opset_11_rcnn_fails_verification_loudly(run_dir, tmp_path):
    # ONNX RoiAlign has no half-pixel (aligned) mode before opset 16: the artifact is written but
    # its boxes and masks are not the eager model's, and the verification says so.
    done = _export(run_dir, tmp_path, "--format", "onnx", "--export-method", "tracing", "--opset", "11")
    assert done.returncode == 1
    assert "FAILED" in done.stderr and "does not match the eager model" in done.stderr
