"""Loading checkpoints cannot run code: malicious .pkl/.pth files are refused before anything in
them executes; model-zoo .pkl files (containers + numpy arrays) still load."""

import collections
import io
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch

from gn_det.checkpoint import (
    RestrictedUnpickler,
    SafeDetectionCheckpointer,
    UnsafeCheckpointError,
    load_pickle_file,
    load_torch_file,
)


class _CreatesFile:
    """Unpickling this calls subprocess.call(["touch", path]): code execution."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return subprocess.call, (["touch", self.path],)


def _malicious_pkl(tmp_path, marker):
    path = tmp_path / "R-50-GN.pkl"
    with open(path, "wb") as f:
        pickle.dump(
            {
                "blobs": {
                    "conv1_w": np.ones((2, 2), np.float32),
                    "payload": _CreatesFile(str(marker)),
                }
            },
            f,
            protocol=2,
        )
    return path


def test_malicious_pickle_is_refused_and_creates_no_file(tmp_path):
    marker = tmp_path / "pwned"
    path = _malicious_pkl(tmp_path, marker)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_pickle_file(str(path))
    assert str(path) in str(info.value) and "'subprocess.call'" in str(info.value)
    assert "--trust-checkpoint" in str(info.value)
    assert not marker.exists()


def test_the_malicious_pickle_really_runs_code_when_trusted(tmp_path):
    # Shows the refusal above is meaningful: with the explicit trust flag, plain pickle runs it.
    marker = tmp_path / "pwned"
    load_pickle_file(str(_malicious_pkl(tmp_path, marker)), trust=True)
    assert marker.exists()


def test_checkpointer_refuses_malicious_pkl_and_leaves_the_model_unchanged(tmp_path):
    marker = tmp_path / "pwned"
    path = _malicious_pkl(tmp_path, marker)
    model = torch.nn.Linear(2, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnsafeCheckpointError, match="subprocess.call"):
        SafeDetectionCheckpointer(model).load(str(path))
    assert not marker.exists()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_malicious_pth_is_refused_by_weights_only_load(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_final.pth"
    torch.save({"model": {"w": torch.ones(2)}, "extra": _CreatesFile(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"model_final\.pth.*subprocess"):
        SafeDetectionCheckpointer(torch.nn.Linear(2, 2)).load(str(path))
    assert not marker.exists()


@pytest.mark.parametrize(
    "global_ref",
    [
        b"builtins\neval",
        b"os\nsystem",
        b"numpy\nload",
        b"numpy.testing\nrun_module_suite",
        b"collections\ndefaultdict",
        b"torch\nload",
        b"numpy.core.multiarray\n_vec_string",
    ],
)
def test_only_the_exact_allowlist_resolves(global_ref):
    data = b"c" + global_ref + b"\n."  # protocol 0 GLOBAL opcode, then STOP
    with pytest.raises(UnsafeCheckpointError, match=global_ref.decode().replace("\n", ".")):
        RestrictedUnpickler(io.BytesIO(data)).load()


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_numpy_arrays_and_containers_load_with_every_protocol(tmp_path, protocol):
    content = {
        "conv1_w": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
        "res2_0_branch2a_gn_s": np.ones(8, np.float32),
        "strided": np.arange(10, dtype=np.int64)[::3],
        "fortran": np.asfortranarray(np.eye(3)),
        "scalar": np.float32(0.5),
        "meta": collections.OrderedDict(
            name="R-50-GN", stages=[3, 4, 6, 3], tags={"gn"}, raw=b"\x00\x01"
        ),
    }
    path = tmp_path / f"p{protocol}.pkl"
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=protocol)
    loaded = load_pickle_file(str(path))
    for key in ("conv1_w", "res2_0_branch2a_gn_s", "strided", "fortran"):
        assert loaded[key].dtype == content[key].dtype and np.array_equal(loaded[key], content[key])
    assert loaded["scalar"] == np.float32(0.5) and loaded["meta"] == content["meta"]


def _py2_array(values: np.ndarray) -> bytes:
    """Protocol-2 opcodes for a float32 vector as Python 2.7 + numpy 1.x wrote it: globals from
    numpy.core.multiarray, the raw data as a Python 2 str (SHORT_BINSTRING)."""
    data = values.astype("<f4").tobytes()
    return (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n"
        + b"K\x00\x85"
        + b"U\x01b"
        + b"\x87R"
        + b"(K\x01"
        + b"K"
        + bytes([len(values)])
        + b"\x85"  # (1, shape,
        + b"cnumpy\ndtype\n"
        + b"U\x02f4K\x00K\x01\x87R"  # dtype('f4', 0, 1)
        + b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # its __setstate__
        + b"\x89"
        + b"U"
        + bytes([len(data)])
        + data
        + b"tb"  # False, data) -> __setstate__
    )


def test_python2_detectron_pickle_loads(tmp_path):
    # Detectron's .pkl files were written by Python 2: a dict of "blobs" including solver momenta.
    w = np.array([1.5, 2.5], np.float32)
    py2 = (
        b"\x80\x02}("
        + b"U\x05blobs"
        + b"}("
        + b"U\x01w"
        + _py2_array(w)
        + b"U\nw_momentum"
        + _py2_array(np.zeros(2, np.float32))
        + b"u"
        + b"u."
    )
    trusted = pickle.loads(py2, encoding="latin1")  # the bytes are a genuine Python 2 pickle
    assert np.array_equal(trusted["blobs"]["w"], w)
    path = tmp_path / "detectron.pkl"
    path.write_bytes(py2)
    checkpoint = SafeDetectionCheckpointer(torch.nn.Linear(1, 1))._load_file(str(path))
    assert checkpoint["__author__"] == "Caffe2" and checkpoint["matching_heuristics"] is True
    assert list(checkpoint["model"]) == ["w"]  # solver momentum blobs are dropped
    assert checkpoint["model"]["w"].dtype == np.float32 and np.array_equal(
        checkpoint["model"]["w"], w
    )


def test_detectron2_model_zoo_pkl_loads_into_a_model(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
    weights = {
        k: np.random.RandomState(0).rand(*v.shape).astype(np.float32)
        for k, v in model.state_dict().items()
    }
    path = tmp_path / "model_final_abc.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "Detectron2 Model Zoo"}, f)
    SafeDetectionCheckpointer(model).load(str(path))
    for key, value in model.state_dict().items():
        assert np.array_equal(value.numpy(), weights[key])


def test_trainer_style_pth_loads_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "model_0000009.pth"
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "iteration": 9,
            "scheduler": {"base_lrs": [0.1], "last_epoch": 10},
        },
        path,
    )
    loaded = load_torch_file(str(path))
    assert loaded["iteration"] == 9 and torch.equal(loaded["model"]["weight"], model.weight)
    assert not os.path.exists(tmp_path / "pwned")
