"""Checkpoint validation: a missing, empty, truncated or corrupt file is reported with its path and
the reason, before any model is built."""

import pickle

import numpy as np
import torch

from gn_det.validation import check_checkpoint, validate


def _pth(tmp_path, name="model_0000099.pth"):
    path = tmp_path / name
    torch.save(
        {"model": {"weight": torch.randn(256, 256), "bias": torch.zeros(256)}, "iteration": 99},
        path,
    )
    return path


def _only(report):
    assert len(report.problems) == 1, report.format()
    return report.problems[0]


def test_valid_pth_and_pkl_pass(tmp_path):
    assert check_checkpoint(str(_pth(tmp_path))).ok
    pkl = tmp_path / "R-50-GN.pkl"
    with open(pkl, "wb") as f:
        pickle.dump(
            {"conv1_w": np.ones((4, 3, 7, 7), np.float32), "conv1_gn_s": np.ones(4, np.float32)},
            f,
            protocol=2,
        )
    assert check_checkpoint(str(pkl)).ok


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pth"
    problem = _only(check_checkpoint(str(path)))
    assert problem.kind == "checkpoint" and problem.where == f"MODEL.WEIGHTS = {path}"
    assert "no such file" in problem.message


def test_empty_file(tmp_path):
    path = tmp_path / "model_final.pth"
    path.write_bytes(b"")
    assert "empty (0 bytes" in _only(check_checkpoint(str(path))).message


def test_truncated_pth(tmp_path):
    path = _pth(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    problem = _only(check_checkpoint(str(path)))
    assert str(path) in problem.message and "truncated" in problem.message


def test_corrupt_pth_fails_its_checksum(tmp_path):
    path = _pth(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the tensor data
    path.write_bytes(bytes(data))
    problem = _only(check_checkpoint(str(path)))
    assert str(path) in problem.message and "CRC" in problem.message


def test_truncated_pkl(tmp_path):
    path = tmp_path / "model_final_f10217.pkl"
    with open(path, "wb") as f:
        pickle.dump(
            {"model": {"w": np.ones(1000, np.float32)}, "__author__": "Detectron2 Model Zoo"}, f
        )
    path.write_bytes(path.read_bytes()[:-100])
    problem = _only(check_checkpoint(str(path)))
    assert str(path) in problem.message and "truncated" in problem.message


def test_checkpoint_without_weights(tmp_path):
    path = tmp_path / "model_final.pth"
    torch.save({"model": {"weight": "not a tensor"}}, path)
    assert "not tensors (first: 'weight': str)" in _only(check_checkpoint(str(path))).message


def test_unsafe_pickle_is_a_problem_unless_trusted(tmp_path):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump(
            {"model": {"w": np.ones(2)}, "__author__": "x", "hook": np.testing.assert_equal}, f
        )
    problem = _only(check_checkpoint(str(path)))
    assert problem.kind == "checkpoint-unsafe" and "numpy.testing" in problem.message
    assert check_checkpoint(str(path), trust=True).ok


def test_resume_checks_the_file_last_checkpoint_names(tmp_path):
    (tmp_path / "last_checkpoint").write_text("model_0000199.pth")  # points at a file that is gone
    _pth(tmp_path, "model_0000099.pth")
    report = validate(
        None,
        ["OUTPUT_DIR", str(tmp_path), "MODEL.WEIGHTS", str(tmp_path / "model_0000099.pth")],
        resume=True,
        check_datasets=False,
    )
    problem = [p for p in report.problems if p.kind == "checkpoint"][0]
    assert problem.where.startswith(
        f"{tmp_path / 'last_checkpoint'} (--resume) = {tmp_path / 'model_0000199.pth'}"
    )
    assert "no such file" in problem.message
    # Without --resume, MODEL.WEIGHTS is what is loaded, and it is fine.
    report = validate(
        None,
        ["OUTPUT_DIR", str(tmp_path), "MODEL.WEIGHTS", str(tmp_path / "model_0000099.pth")],
        check_datasets=False,
    )
    assert not [p for p in report.problems if p.kind.startswith("checkpoint")]
