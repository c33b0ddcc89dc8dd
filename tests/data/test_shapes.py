"""The embedded synthetic shapes dataset: deterministic, exact masks, occlusion, registration."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as d2_utils

import gn_det  # noqa: F401  registers the embedded datasets
from gn_det.data import (
    BUILTIN_SHAPES_SPECS,
    SHAPE_CLASSES,
    ShapesSpec,
    generate_shapes_split,
    prepare_dataset,
    register_shapes_dataset,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = ShapesSpec(num_images=12, seed=7, height=96, width=96, min_radius=8, max_radius=30)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    directory = generate_shapes_split(str(tmp_path_factory.mktemp("shapes")), "s", SPEC)
    with open(os.path.join(directory, "annotations.json")) as f:
        return directory, json.load(f)


def _image(directory, record):
    return cv2.imread(os.path.join(directory, "images", record["file_name"]))[:, :, ::-1]


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path, split):
    directory, _ = split
    again = generate_shapes_split(str(tmp_path / "a"), "s", SPEC)
    other = generate_shapes_split(str(tmp_path / "b"), "s", ShapesSpec(**{**SPEC.__dict__, "seed": 8}))
    for name in ["annotations.json"] + [f"images/{i:06d}.png" for i in (1, 12)]:
        with open(os.path.join(directory, name), "rb") as f, open(os.path.join(again, name), "rb") as g:
            assert f.read() == g.read(), name
    with open(os.path.join(directory, "images/000001.png"), "rb") as f, open(os.path.join(other, "images/000001.png"), "rb") as g:
        assert f.read() != g.read()


def test_masks_are_exactly_the_pixels_painted_in_the_instance_colour(split):
    directory, coco = split
    for record in coco["images"]:
        image = _image(directory, record)
        anns = [a for a in coco["annotations"] if a["image_id"] == record["id"]]
        assert anns, f"image {record['id']} has no shapes"
        union = np.zeros(image.shape[:2], dtype=np.int32)
        for a in anns:
            mask = mask_util.decode(a["segmentation"]).astype(bool)
            union += mask
            assert (image[mask] == np.array(a["colour"], dtype=np.uint8)).all()
            assert a["area"] == mask.sum()
            x, y, w, h = a["bbox"]
            ys, xs = np.nonzero(mask)
            assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert union.max() == 1, "visible masks of one image must not overlap"


def test_instances_are_occluded_but_stay_visible_enough(split):
    _, coco = split
    fractions = np.array([a["visible_fraction"] for a in coco["annotations"]])
    assert (fractions < 1).sum() >= 3, "occlusion should occur"
    assert fractions.min() >= SPEC.min_visible_fraction - 1e-4
    assert min(a["area"] for a in coco["annotations"]) >= SPEC.min_visible_pixels


def test_sizes_colours_and_classes_vary(split):
    _, coco = split
    areas = [a["area"] for a in coco["annotations"]]
    assert max(areas) / min(areas) > 8
    assert len({tuple(a["colour"]) for a in coco["annotations"]}) > len(coco["annotations"]) // 2
    assert {a["category_id"] for a in coco["annotations"]} == {1, 2, 3, 4}
    assert [c["name"] for c in coco["categories"]] == list(SHAPE_CLASSES)


def test_finished_split_is_reused_not_rewritten(tmp_path):
    spec = ShapesSpec(num_images=2, seed=3, height=48, width=48, min_radius=6, max_radius=14)
    directory = generate_shapes_split(str(tmp_path), "r", spec)
    stamp = os.stat(os.path.join(directory, "annotations.json")).st_mtime_ns
    assert generate_shapes_split(str(tmp_path), "r", spec) == directory
    assert os.stat(os.path.join(directory, "annotations.json")).st_mtime_ns == stamp
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no scratch left behind


def test_bad_spec_is_rejected_with_the_value():
    with pytest.raises(ValueError, match="hexagon"):
        ShapesSpec(num_images=1, seed=0, classes=("circle", "hexagon"))
    with pytest.raises(ValueError, match="min_shapes"):
        ShapesSpec(num_images=1, seed=0, min_shapes=4, max_shapes=2)


def test_registered_dataset_generates_on_first_use_and_loads_as_bitmasks(tmp_path):
    spec = ShapesSpec(num_images=3, seed=5, height=64, width=64, min_radius=6, max_radius=20)
    register_shapes_dataset("test_shapes_lazy", spec, root=str(tmp_path))
    meta = MetadataCatalog.get("test_shapes_lazy")
    assert meta.thing_classes == list(SHAPE_CLASSES)
    assert not os.path.exists(meta.json_file), "registration must not generate"
    dicts = DatasetCatalog.get("test_shapes_lazy")
    assert os.path.isfile(meta.json_file) and len(dicts) == 3
    record = dicts[0]
    instances = d2_utils.annotations_to_instances(record["annotations"], (64, 64), mask_format="bitmask")
    assert instances.gt_masks.tensor.shape == (len(record["annotations"]), 64, 64)
    expected = sum(int(mask_util.area(a["segmentation"])) for a in record["annotations"])
    assert instances.gt_masks.tensor.sum().item() == expected


def test_import_registers_builtin_names_under_the_cache_dir_env_without_generating(tmp_path):
    code = (
        "import gn_det, json, os; from detectron2.data import DatasetCatalog, MetadataCatalog; "
        "names = ['gn_det_shapes_train', 'gn_det_shapes_val']; "
        "print(json.dumps({n: [n in DatasetCatalog, MetadataCatalog.get(n).json_file, "
        "MetadataCatalog.get(n).thing_classes] for n in names}))"
    )
    env = dict(os.environ, GN_DET_CACHE_DIR=str(tmp_path), PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    for name, (registered, json_file, classes) in found.items():
        assert registered and classes == list(SHAPE_CLASSES)
        assert json_file.startswith(str(tmp_path)), json_file
    assert not os.path.exists(os.path.join(tmp_path, "datasets")), "import must not generate data"


def test_builtin_splits_use_different_seeds():
    train, val = BUILTIN_SHAPES_SPECS["gn_det_shapes_train"], BUILTIN_SHAPES_SPECS["gn_det_shapes_val"]
    assert train.seed != val.seed and train.fingerprint() != val.fingerprint()


def test_prepare_dataset_ignores_datasets_it_does_not_generate():
    prepare_dataset("coco_2017_val")  # a Detectron2 dataset: nothing to generate, no error
