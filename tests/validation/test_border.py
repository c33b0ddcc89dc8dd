"""Clipping border-crossing polygons and boxes (gn_det/validation/border.py)."""

import numpy as np
import pycocotools.mask as mask_util

from gn_det.validation.border import (
    box_inside_fraction,
    clip_box,
    clip_polygon,
    polygon_inside_fraction,
)

W, H = 40, 30


def _mask(points):
    rle = mask_util.frPyObjects([np.asarray(points, dtype=np.float64).ravel().tolist()], H, W)
    return mask_util.decode(rle)[:, :, 0]


def test_concave_polygon_cut_in_two_pieces_keeps_its_rasterized_mask():
    # A U whose two arms leave the image through the top border (y < 0).
    u_shape = np.array(
        [[5, -6], [15, -6], [15, 20], [25, 20], [25, -6], [35, -6], [35, 28], [5, 28]], float
    )
    clipped = clip_polygon(u_shape, W, H)
    assert clipped[:, 1].min() == 0 and (clipped >= 0).all()
    original, repaired = _mask(u_shape), _mask(clipped)
    assert original.sum() > 500 and np.sum(original != repaired) <= 4


def test_inside_fraction_of_a_polygon_is_measured_on_its_rasterized_area():
    half_out = np.array([[30, 0], [50, 0], [50, 10], [30, 10]], float)  # x 30..50, image ends at 40
    assert abs(polygon_inside_fraction(half_out, W, H) - 0.5) < 0.06
    far = np.array([[1e5, 1e5], [1e5 + 50, 1e5], [1e5 + 50, 1e5 + 50]], float)  # wrong units
    assert polygon_inside_fraction(far, W, H) == 0.0


def test_box_fraction_and_clip():
    assert box_inside_fraction([35, 0, 10, 10], W, H) == 0.5
    assert clip_box([-2, 25, 10, 10], W, H) == [0.0, 25.0, 8.0, 5.0]
