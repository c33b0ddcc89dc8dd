"""Run exported artifacts where gn_det (and Detectron2) cannot be imported.

Started by the export tests as ``python -I -S standalone_run.py JOBS.json``: ``-S`` skips
site-packages' ``.pth`` files, which is where the editable installs of gn_det and Detectron2
live, and ``-I`` ignores PYTHONPATH and the script's directory. The site-packages directories
named in the job file are then put back on ``sys.path`` by hand, so torch, torchvision (its
``nms``/``roi_align`` ops) and onnxruntime import, and gn_det does not. A regular (not
editable) install of Detectron2 or gn_det sits in site-packages itself, so both are also refused
by an import hook: the deployment target has neither.

Job file: {"site_packages": [...], "jobs": [{"path", "kind": "traced"|"scripted"|"onnx"|"pt2",
"inputs": [image .pt files], "outputs": [result .pt files]}]}. Writes {"gn_det_importable": bool,
"detectron2_importable": bool} to JOBS.json + ".env.json".
"""

import json
import sys


class _Refuse:
    """A meta path finder that makes ``import gn_det`` / ``import detectron2`` fail."""

    REFUSED = ("gn_det", "detectron2")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.REFUSED:
            raise ImportError(f"{name} is not available where exported models are deployed")
        return None


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def main(job_file: str) -> None:
    with open(job_file) as f:
        spec = json.load(f)
    sys.path.extend(spec["site_packages"])
    sys.meta_path.insert(0, _Refuse())
    env = {"gn_det_importable": _importable("gn_det"), "detectron2_importable": _importable("detectron2")}
    with open(job_file + ".env.json", "w") as f:
        json.dump(env, f)
    import torch
    import torchvision  # noqa: F401  registers torchvision::nms and roi_align (TorchScript, torch.export)

    for job in spec["jobs"]:
        if job["kind"] == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(job["path"], providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            run = lambda image: [torch.from_numpy(a) for a in session.run(None, {name: image.numpy()})]
        elif job["kind"] == "pt2":
            program = torch.export.load(job["path"]).module()
            run = lambda image: list(program(image))
        else:
            module = torch.jit.load(job["path"])
            if job["kind"] == "traced":
                run = lambda image: list(module(image))
            else:
                run = lambda image: dict(module(({"image": image},))[0])
        with torch.no_grad():
            for image_file, output_file in zip(job["inputs"], job["outputs"]):
                torch.save(run(torch.load(image_file)), output_file)


if __name__ == "__main__":
    main(sys.argv[1])
