"""Detectron's ImageNet GN ResNet (Caffe2 names, e.g. R-50-GN.pkl) loads into gn_det's backbone
through Detectron2's DetectionCheckpointer, every GN scale and bias in its place."""
import pickle

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.catalog import ModelCatalog
from detectron2.modeling import build_model
from modeling_helpers import MASK_RCNN_FPN_GN_YAML, narrow, use_gn_det_names, zoo_cfg

import gn_det  # noqa: F401  (registers the names)

R50_BLOCKS = (3, 4, 6, 3)
# Caffe2 branch name -> Detectron2 conv name inside a block.
BRANCHES = {"branch1": "shortcut", "branch2a": "conv1", "branch2b": "conv2", "branch2c": "conv3"}


def _caffe2_r50_gn_blobs(model):
    """Blobs named as in Detectron's R-50-GN.pkl, shaped like ``model``'s backbone, each filled
    with distinct random values. Returns (blobs, {blob name: model state_dict key})."""
    state = model.state_dict()
    prefix = "backbone.bottom_up."
    where = {"conv1_w": "stem.conv1.weight", "conv1_gn_s": "stem.conv1.norm.weight",
             "conv1_gn_b": "stem.conv1.norm.bias"}
    for stage, num_blocks in zip(range(2, 6), R50_BLOCKS):
        for block in range(num_blocks):
            for branch, conv in BRANCHES.items():
                if branch == "branch1" and block > 0:
                    continue
                c2, d2 = f"res{stage}_{block}_{branch}", f"res{stage}.{block}.{conv}"
                where[f"{c2}_w"] = f"{d2}.weight"
                where[f"{c2}_gn_s"] = f"{d2}.norm.weight"
                where[f"{c2}_gn_b"] = f"{d2}.norm.bias"
    rng = np.random.default_rng(0)
    blobs = {c2: rng.standard_normal(state[prefix + d2].shape).astype(np.float32)
             for c2, d2 in where.items()}
    # The ImageNet classifier is in the file too and must be ignored by a detector.
    blobs["pred_w"] = rng.standard_normal((1000, 2048)).astype(np.float32)
    blobs["pred_b"] = np.zeros(1000, dtype=np.float32)
    return blobs, {c2: prefix + d2 for c2, d2 in where.items()}


def _gn_model():
    torch.manual_seed(0)
    # Narrow R50: every layer and name of R-50, fewer channels (small file, fast load).
    return build_model(narrow(use_gn_det_names(zoo_cfg(MASK_RCNN_FPN_GN_YAML))))


def _assert_loaded(model, before, blobs, where):
    after = model.state_dict()
    convs = 1 + 16 * 3 + 4  # stem, 16 blocks x 3 convs, 4 shortcuts; each: _w, _gn_s, _gn_b
    assert len(where) == 3 * convs
    assert set(where.values()) == {k for k in after if k.startswith("backbone.bottom_up.")}
    for c2, key in where.items():
        assert torch.equal(after[key], torch.from_numpy(blobs[c2])), (c2, key)
    assert sum(c2.endswith(("_gn_s", "_gn_b")) for c2 in where) == 2 * convs
    untouched = set(after) - set(where.values())
    assert untouched and all(torch.equal(after[k], before[k]) for k in untouched)


@pytest.mark.parametrize("layout", ["imagenet", "blobs"])
def test_caffe2_r50_gn_pkl_loads_into_gn_det_backbone(tmp_path, layout):
    model = _gn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    blobs, where = _caffe2_r50_gn_blobs(model)
    path = tmp_path / "R-50-GN.pkl"
    # Detectron's ImageNet files are a flat name -> array dict; detection files nest it in "blobs".
    with open(path, "wb") as f:
        pickle.dump(blobs if layout == "imagenet" else {"blobs": blobs}, f)
    DetectionCheckpointer(model).load(str(path))
    _assert_loaded(model, before, blobs, where)


def test_catalog_path_of_detectron_r50_gn_resolves_without_download():
    url = ModelCatalog.get("ImageNetPretrained/FAIR/R-50-GN")
    assert url == "https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/47261647/R-50-GN.pkl"


def test_catalog_r50_gn_loads_through_detection_checkpointer(tmp_path, monkeypatch):
    # Serve the catalog's host from a local folder holding a file at the catalog's own path.
    monkeypatch.setattr(ModelCatalog, "S3_C2_DETECTRON_PREFIX", str(tmp_path))
    model = _gn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    blobs, where = _caffe2_r50_gn_blobs(model)
    path = tmp_path / "ImageNetPretrained" / "47261647" / "R-50-GN.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(blobs))
    DetectionCheckpointer(model).load("catalog://ImageNetPretrained/FAIR/R-50-GN")
    _assert_loaded(model, before, blobs, where)
