"""torch.export (.pt2) and the dynamo ONNX exporter on the main job's model family: one program
with symbolic image size, saved as .pt2 and converted to ONNX, run where gn_det and Detectron2
cannot be imported, on the sample size and on another size that needs padding, against the eager
model; the export-time patches leave eager Detectron2 as it is.

The program is exported once (module fixture: ~20-50 s, the ONNX conversion as long again on
the shared 2-core machine); the other tests are eager and small.
"""

import onnx
import pytest
import torch
import torchvision
from detectron2.structures import Boxes, ImageList

from export_helpers import build_eval_model, image, run_without_gn_det, synthetic_cfg
from gn_det.export import (
    PATCHES,
    TOLERANCES,
    detections_of,
    export_onnx_dynamo,
    export_pt2,
    max_differences,
    min_image_side,
    torch_export_patches,
    tracing_adapter,
)
from gn_det.export.export_patches import _batched_nms

pytestmark = pytest.mark.slow  # the module fixture: one export, one ONNX conversion

SAMPLE = (96, 96)
# Not a multiple of the FPN's size divisibility (32): the program pads it itself. (torch.onnx's
# dynamo exporter truncates a floor division of a negative size; this size caught it.)
OTHER = (80, 112)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch_export")
    model = build_eval_model(synthetic_cfg())  # fused GN, as trained
    images = {"sample": image(*SAMPLE), "other": image(*OTHER, seed=1)}
    eager_adapter = tracing_adapter(model, images["sample"])
    eager = {}
    for name, im in images.items():
        with torch.no_grad():
            flat = eager_adapter(im)
        eager[name] = detections_of(eager_adapter.outputs_schema(list(flat))[0]["instances"])
    pt2, onnx_path = str(root / "model.pt2"), str(root / "model.onnx")
    program, adapter = export_pt2(model, images["sample"], pt2)
    export_onnx_dynamo(model, images["sample"], onnx_path, program=program)
    files = {}
    for name, im in images.items():
        files[name] = str(root / f"{name}.pt")
        torch.save(im, files[name])
    jobs = [
        {
            "path": path,
            "kind": kind,
            "inputs": [files[n] for n in images],
            "outputs": [f"{path}.{n}.out.pt" for n in images],
        }
        for kind, path in (("pt2", pt2), ("onnx", onnx_path))
    ]
    env = run_without_gn_det(jobs, str(root))
    results = {}
    for job in jobs:
        for name, out in zip(images, job["outputs"]):
            flat = torch.load(out)
            results[(job["kind"], name)] = detections_of(adapter.outputs_schema(flat)[0]["instances"])
    return {
        "env": env,
        "eager": eager,
        "results": results,
        "program": program,
        "module": program.module(),  # the in-memory program (the saved one ran in the subprocess)
        "pt2": pt2,
        "onnx": onnx_path,
        "model": model,
    }


def test_the_artifacts_ran_where_gn_det_and_detectron2_cannot_be_imported(artifacts):
    assert artifacts["env"] == {"gn_det_importable": False, "detectron2_importable": False}


@pytest.mark.parametrize("kind", ["pt2", "onnx"])
@pytest.mark.parametrize("size", ["sample", "other"])
def test_artifact_matches_the_eager_model(artifacts, kind, size):
    eager, exported = artifacts["eager"][size], artifacts["results"][(kind, size)]
    differences, compared = max_differences(eager, exported)
    assert compared == len(eager["scores"]) > 0
    for key, value in differences.items():
        assert value <= TOLERANCES[key], (kind, size, key, value)


def test_program_holds_standard_ops_only(artifacts):
    targets = {str(n.target) for n in artifacts["program"].graph.nodes if n.op == "call_function"}
    assert not [t for t in targets if "gn_det" in t], targets
    assert "aten.group_norm.default" in targets  # the fused GN recorded as PyTorch's
    assert {"torchvision.nms.default", "torchvision.roi_align.default"} <= targets
    domains = {node.domain for node in onnx.load(artifacts["onnx"]).graph.node}
    assert domains <= {"", "ai.onnx"}, domains


def test_program_refuses_an_image_below_its_smallest_side(artifacts):
    low = min_image_side(artifacts["model"])
    assert low == 65  # FPN's p6 has stride 64
    with pytest.raises(Exception, match=r">= 65"):
        artifacts["module"](image(low - 1, 96))


def test_non_finite_boxes_raise_in_the_program_where_eager_drops_them(artifacts):
    # Eager Detectron2 filters non-finite proposals (valid_mask) and finds nothing on a NaN image;
    # the program asserts finiteness at run time instead of silently going on (export_patches).
    bad = torch.full((3, *SAMPLE), float("nan"))
    model = artifacts["model"]
    with torch.no_grad():
        eager = model.inference([{"image": bad}], do_postprocess=False)[0]
    assert len(eager) == 0
    with pytest.raises(RuntimeError, match="non-finite|_assert_scalar|Runtime assertion"):
        artifacts["module"](bad)


def test_export_batched_nms_keeps_what_torchvision_keeps():
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(300, 2, generator=generator) * 200
    boxes = torch.cat([corners, corners + 5 + torch.rand(300, 2, generator=generator) * 60], dim=1)
    scores = torch.rand(300, generator=generator)
    classes = torch.randint(0, 4, (300,), generator=generator)
    expected = torchvision.ops.batched_nms(boxes, scores, classes, 0.5)
    assert 0 < len(expected) < 300
    assert torch.equal(_batched_nms(boxes, scores, classes, 0.5), expected)
    empty = _batched_nms(boxes[:0], scores[:0], classes[:0], 0.5)  # no error on no boxes
    assert empty.shape == (0,) and empty.dtype == torch.int64


def test_patches_leave_eager_detectron2_unchanged():
    x = image(70, 90)
    with torch_export_patches() as applied:
        assert [p.name for p in applied] == [p.name for p in PATCHES]
        padded = ImageList.from_tensors([x], 32)
        empty = Boxes(torch.zeros(0))  # eager keeps Detectron2's empty-input reshape
    reference = ImageList.from_tensors([x], 32)
    assert torch.equal(padded.tensor, reference.tensor) and padded.image_sizes == reference.image_sizes
    assert empty.tensor.shape == (0, 4)
    assert ImageList.from_tensors is not None and Boxes.__init__.__module__ == "detectron2.structures.boxes"


def test_each_patch_names_the_detectron2_line_and_the_error():
    for patch in PATCHES:
        assert ".py" in patch.where and patch.error and patch.change, patch.name
    with pytest.raises(ValueError, match="unknown patch"):
        with torch_export_patches(skip=["no such patch"]):
            pass
