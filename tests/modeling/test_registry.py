"""``import gn_det`` alone registers every gn_det name in Detectron2's registries."""
import subprocess
import sys

REGISTERED = {
    "BACKBONE_REGISTRY": [
        "build_gn_resnet_backbone",
        "build_gn_resnet_fpn_backbone",
        "build_gn_retinanet_resnet_fpn_backbone",
    ],
    "RPN_HEAD_REGISTRY": ["GNRPNHead"],
    "ROI_BOX_HEAD_REGISTRY": ["GNConvFCHead"],
    "ROI_MASK_HEAD_REGISTRY": ["GNMaskRCNNConvUpsampleHead"],
    "ROI_HEADS_REGISTRY": ["GNRes5ROIHeads"],
    "META_ARCH_REGISTRY": ["GNRetinaNet"],
}


def test_import_gn_det_registers_every_name():
    # A fresh interpreter: nothing but ``import gn_det`` may have run before the lookup.
    script = (
        "import detectron2.modeling as m\n"
        f"names = {REGISTERED!r}\n"
        "before = {r: [n for n in ns if n in getattr(m, r)] for r, ns in names.items()}\n"
        "import gn_det\n"
        "missing = {r: [n for n in ns if n not in getattr(m, r)] for r, ns in names.items()}\n"
        "print(sum(map(len, before.values())), sum(map(len, missing.values())))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["0", "0"], result.stdout + result.stderr
