"""Every architecture exports to TorchScript (tracing, scripting) and ONNX, and the artifact runs
in a Python where gn_det and Detectron2 cannot be imported, matching the eager model.

All artifacts are exported once (module fixture) and run in one gn_det-free subprocess.
"""

import copy

import onnx
import pytest
import torch
from detectron2.export import STABLE_ONNX_OPSET_VERSION, TracingAdapter, scripting_with_instances

from export_helpers import ARCHITECTURES, build_eval_model, image, run_without_gn_det
from detectron2.modeling import GeneralizedRCNN

# The "direct" artifacts go through Detectron2's own export path on the model as trained (no
# standard_model conversion), with the adapter and field list gn_det's exporters hand to it.
from gn_det.export.exporters import _SCRIPTED_FIELDS as FIELDS
from gn_det.export.exporters import _rcnn_inference
from gn_det.export.exporters import _ScriptableRCNN as _DictOutputs
from gn_det.export import (
    TOLERANCES,
    detections_of,
    export_scripting,
    export_tracing,
    max_differences,
    scripted_detections,
    torchscript_on_purpose,
    tracing_adapter,
)

# Large enough that every normed layer sees more than one value per group: PyTorch's group_norm
# (what the artifacts run) refuses a 1x1 map with one channel per group (IN in the RPN head on p6).
TRACE_SIZE = (96, 96)
OTHER_SIZE = (64, 128)  # Detectron2's tracing caveat: a trace is run on another image size
SCRIPTED = ("GN fused", "GN+WS", "R50-C4", "RetinaNet")
DIRECT = ("GN fused", "GN+WS")  # Detectron2's own export paths on the model as trained


def _eager(model, im):
    """Detectron2's tracing output of the eager model (as trained: fused, WS), as detections."""
    adapter = tracing_adapter(model, im)
    with torch.no_grad():
        flat = adapter(im)
    return detections_of(adapter.outputs_schema(list(flat))[0]["instances"])


pytestmark = [pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{(architecture, kind): (detections per image name, eager detections per image name)} for
    every artifact, run where gn_det is not importable; plus that process's import check."""
    root = tmp_path_factory.mktemp("export")
    images = {"trace": image(*TRACE_SIZE), "other": image(*OTHER_SIZE, seed=1)}
    image_files = {}
    for name, im in images.items():
        image_files[name] = str(root / f"{name}.pt")
        torch.save(im, image_files[name])
    jobs, readers, eager = [], {}, {}
    for i, (arch, make_cfg) in enumerate(ARCHITECTURES.items()):
        model = build_eval_model(make_cfg())
        eager[arch] = {name: _eager(model, im) for name, im in images.items()}
        artifacts = {
            "traced": export_tracing(model, images["trace"], str(root / f"{i}.ts"), "torchscript"),
            "onnx": export_tracing(model, images["trace"], str(root / f"{i}.onnx"), "onnx"),
        }
        paths = {"traced": str(root / f"{i}.ts"), "onnx": str(root / f"{i}.onnx")}
        if arch == "RetinaNet":  # no RoIAlign: Detectron2's opset 11 is right for it
            path = str(root / f"{i}.opset11.onnx")
            artifacts["onnx opset 11"] = export_tracing(model, images["trace"], path, "onnx", STABLE_ONNX_OPSET_VERSION)
            paths["onnx opset 11"] = path
        if arch in SCRIPTED:
            export_scripting(model, str(root / f"{i}.scripted.ts"))
            postprocess = not isinstance(model, GeneralizedRCNN)
            artifacts["scripted"], paths["scripted"] = postprocess, str(root / f"{i}.scripted.ts")
        if arch in DIRECT:
            inference = _rcnn_inference
            adapter = TracingAdapter(model, [{"image": images["trace"]}], inference).eval()
            with torch.no_grad(), torchscript_on_purpose():  # the test's own TorchScript calls
                traced = torch.jit.trace(adapter, (images["trace"],), check_trace=False)
                torch.jit.save(traced, str(root / f"{i}.direct.ts"))
                torch.onnx.export(
                    adapter,
                    (images["trace"],),
                    str(root / f"{i}.direct.onnx"),
                    opset_version=17,
                    dynamo=False,
                )
            # Scripting replaces the model's components by their prepared copies (Detectron2's
            # ResNet/FPN preparation does too): script a copy.
            with torchscript_on_purpose():
                scripted = scripting_with_instances(_DictOutputs(copy.deepcopy(model)).eval(), FIELDS)
                torch.jit.save(scripted, str(root / f"{i}.direct.scripted.ts"))
            for kind in ("direct traced", "direct onnx"):
                artifacts[kind] = adapter
            artifacts["direct scripted"] = False  # a dict of fields; no postprocess (R-CNN)
            paths["direct traced"], paths["direct onnx"] = str(root / f"{i}.direct.ts"), str(
                root / f"{i}.direct.onnx"
            )
            paths["direct scripted"] = str(root / f"{i}.direct.scripted.ts")
        for kind, path in paths.items():
            runner_kind = "onnx" if "onnx" in kind else ("scripted" if "scripted" in kind else "traced")
            names = ["trace", "other"] if kind == "traced" else ["trace"]
            outputs = [path + f".{n}.out.pt" for n in names]
            jobs.append(
                {
                    "path": path,
                    "kind": runner_kind,
                    "inputs": [image_files[n] for n in names],
                    "outputs": outputs,
                }
            )
            readers[(arch, kind)] = (artifacts[kind], dict(zip(names, outputs)), path)
    env = run_without_gn_det(jobs, str(root))
    results = {}
    for key, (adapter, outputs, path) in readers.items():
        detections = {}
        for name, file in outputs.items():
            raw = torch.load(file)
            if isinstance(adapter, bool):  # scripted: a dict of fields; adapter = postprocess
                detections[name] = scripted_detections(raw, images[name].shape[1:], adapter)
            else:
                detections[name] = detections_of(adapter.outputs_schema(raw)[0]["instances"])
        results[key] = (detections, eager[key[0]], path)
    return {"results": results, "env": env}


def test_subprocess_cannot_import_gn_det_or_detectron2(exported):
    assert exported["env"] == {"gn_det_importable": False, "detectron2_importable": False}


def _check(detections, eager, name="trace"):
    differences, compared = max_differences(eager[name], detections[name])
    assert compared == len(eager[name]["scores"]) > 0, "the eager model found nothing to compare"
    for key, value in differences.items():
        assert value <= TOLERANCES[key], (key, value)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("kind", ["traced", "onnx"])
def test_traced_artifact_matches_eager_without_gn_det(exported, arch, kind):
    detections, eager, _ = exported["results"][(arch, kind)]
    _check(detections, eager)


def test_retinanet_onnx_at_detectron2s_opset_11_matches_eager_without_gn_det(exported):
    detections, eager, _ = exported["results"][("RetinaNet", "onnx opset 11")]
    _check(detections, eager)


@pytest.mark.parametrize("arch", SCRIPTED)
def test_scripted_artifact_matches_eager_without_gn_det(exported, arch):
    detections, eager, _ = exported["results"][(arch, "scripted")]
    _check(detections, eager)


@pytest.mark.parametrize("arch", DIRECT)
@pytest.mark.parametrize("kind", ["direct traced", "direct onnx", "direct scripted"])
def test_detectron2_export_paths_on_the_trained_model_have_standard_ops(exported, arch, kind):
    # No gn_det call in between: Detectron2's TracingAdapter + torch.jit.trace / torch.onnx.export,
    # and scripting_with_instances, on the model as trained (fused GN, WS not folded).
    detections, eager, path = exported["results"][(arch, kind)]
    _check(detections, eager)
    if kind == "direct onnx":
        domains = {node.domain for node in onnx.load(path).graph.node}
        assert domains <= {"", "ai.onnx"}, domains
    else:
        with torchscript_on_purpose():
            graph = str(torch.jit.load(path).inlined_graph)
        assert "gn_det::" not in graph  # no op of gn_det's library


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_exported_graph_has_no_gn_det_op_and_no_weight_standardization(exported, arch):
    _, _, path = exported["results"][(arch, "traced")]
    with torchscript_on_purpose():
        graph = str(torch.jit.load(path).inlined_graph)
    assert "gn_det::" not in graph
    assert "aten::group_norm" in graph
    assert "aten::var_mean" not in graph  # WS is folded into the conv weights


def test_traced_model_on_another_image_size_matches_eager(exported):
    # Detectron2 warns that a trace may be specific to its input size; for these models the
    # trace taken on 96x96 gives the eager model's detections on 64x128 too (docs/deploy.md).
    for arch in ARCHITECTURES:
        detections, eager, _ = exported["results"][(arch, "traced")]
        _check(detections, eager, "other")
