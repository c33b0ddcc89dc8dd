"""GN's defining property on a whole gn_det backbone + FPN: in training mode, an image's features
do not depend on the other images in its batch. BN's do, which shows the test can fail."""
import pytest
import torch
from detectron2.modeling import build_backbone
from detectron2.structures import ImageList
from modeling_helpers import MASK_RCNN_FPN_GN_YAML, narrow, set_norm_everywhere, use_gn_det_names, zoo_cfg

import gn_det  # noqa: F401  (registers the names)


def _max_batch_dependence(choice: str) -> float:
    """Largest |difference| of any FPN feature of image 0, computed alone vs. in a batch of 3."""
    cfg = set_norm_everywhere(narrow(use_gn_det_names(zoo_cfg(MASK_RCNN_FPN_GN_YAML))), choice)
    cfg.MODEL.BACKBONE.FREEZE_AT = 0  # train every norm (frozen stages would use FrozenBN)
    # float64: float32 conv kernels may round differently for batch sizes 1 and 3, and IN/LN
    # amplify that in near-constant channels; the property itself is exact.
    backbone = build_backbone(cfg).double().train()
    generator = torch.Generator().manual_seed(0)
    # Different sizes: padding to a common size is part of batching, so image 0 alone is given
    # with exactly the padding it has inside the batch.
    images = [torch.randn(3, h, w, generator=generator, dtype=torch.float64) for h, w in [(64, 64), (48, 64), (64, 40)]]
    batch = ImageList.from_tensors(images, backbone.size_divisibility).tensor
    with torch.no_grad():
        batched = backbone(batch)
        alone = backbone(batch[:1])
    assert set(alone) == {"p2", "p3", "p4", "p5", "p6"}
    return max((batched[k][:1] - alone[k]).abs().max().item() for k in alone)


@pytest.mark.parametrize("choice", ["GN-groups", "GN-channels", "GN+WS", "LN", "IN"])
def test_group_norm_features_do_not_depend_on_the_batch(choice):
    assert _max_batch_dependence(choice) < 1e-9


@pytest.mark.parametrize("choice", ["BN", "SyncBN"])
def test_batch_norm_features_depend_on_the_batch(choice):
    # Same test, BN: batch statistics mix the images, so it must fail the GN bound by far.
    assert _max_batch_dependence(choice) > 1e-2
