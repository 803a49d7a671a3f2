"""Click simulation: centre clicks, seeded random clicks, corrective clicks on the largest error region."""

import numpy as np
import pytest

from efficientsam_hf.evaluation import click_rng, first_click, next_click, region_center


def _rectangle(shape=(20, 30), rows=(5, 14), cols=(3, 24)):
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return mask


def test_center_click_is_farthest_from_the_boundary():
    square = _rectangle(rows=(5, 13), cols=(7, 15))  # 9x9: one pixel is 5 from every side
    x, y, label = first_click(square, "center")
    assert (x, y, label) == (11.5, 9.5, 1)  # pixel centre of row 9, column 11
    # the image border is a boundary too: a mask touching the left edge is clicked away from it
    edge = np.zeros((9, 40), bool)
    edge[:, :20] = True
    assert region_center(edge) == (4, 4)


def test_random_click_is_inside_and_reproducible():
    mask = _rectangle()
    clicks = [first_click(mask, "random", click_rng(seed=0, annotation_id=7)) for _ in range(2)]
    assert clicks[0] == clicks[1]
    for x, y, _ in clicks:
        assert mask[int(y), int(x)]
    others = {first_click(mask, "random", click_rng(seed=s, annotation_id=7)) for s in range(1, 9)}
    assert len(others | {clicks[0]}) > 1  # the seed matters
    with pytest.raises(ValueError, match="rng"):
        first_click(mask, "random")
    with pytest.raises(ValueError, match="strategy"):
        first_click(mask, "corner")


def test_next_click_targets_largest_error_region():
    gt = _rectangle(rows=(0, 9), cols=(0, 9))
    pred = gt.copy()
    pred[0:10, 6:10] = False  # 40 pixels missed -> positive click in the missed strip
    pred[15:17, 20:22] = True  # 4 spurious pixels: smaller
    x, y, label = next_click(gt, pred)
    assert label == 1 and 6 <= x - 0.5 <= 9 and gt[int(y), int(x)] and not pred[int(y), int(x)]
    spurious = gt.copy()
    spurious[12:19, 12:19] = True
    x, y, label = next_click(gt, spurious)
    assert label == 0 and (int(y), int(x)) == (15, 15)
    assert next_click(gt, gt) is None
