"""Simulated clicks for point-prompt evaluation (the interactive-segmentation protocol SAM and EfficientSAM use).

A click is `(x, y, label)` in original-image pixels, with `x, y` at the pixel's centre (`col + 0.5, row + 0.5`):
that is where the mask post-processing (`align_corners=False` upsampling) puts the pixel. Label 1 is positive,
0 negative.

- first click, "center": the object pixel farthest from the mask boundary (the image border counts as boundary).
- first click, "random": a uniformly random object pixel; the generator is seeded with `(seed, annotation id)`, so a
  click does not depend on which other objects or images were evaluated, and a resumed run gives the same clicks.
- further clicks: the centre of the largest error region of the previous prediction, positive on a missed part
  (false negative), negative on a spurious part (false positive).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FIRST_CLICK_STRATEGIES = ("center", "random")

Click = tuple[float, float, int]


def click_rng(seed: int, annotation_id: int) -> np.random.Generator:
    """The generator for one object's random clicks: independent of evaluation order."""
    return np.random.default_rng([int(seed), int(annotation_id)])


def region_center(region: np.ndarray) -> tuple[int, int]:
    """(row, col) of the region pixel farthest from the region's boundary; ties go to the first in raster order."""
    if not region.any():
        raise ValueError("region must contain at least one pixel.")
    rows, cols = ndimage.find_objects(region.astype(np.uint8))[0]
    crop = np.pad(region[rows, cols], 1)  # background all around: outside the crop is outside the region anyway
    distance = ndimage.distance_transform_edt(crop)[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return rows.start + int(row), cols.start + int(col)


def _as_click(row: int, col: int, label: int) -> Click:
    return (col + 0.5, row + 0.5, label)


def first_click(mask: np.ndarray, strategy: str, rng: np.random.Generator | None = None) -> Click:
    """The first (positive) click on a non-empty ground-truth mask."""
    if strategy == "center":
        return _as_click(*region_center(mask), 1)
    if strategy == "random":
        if rng is None:
            raise ValueError("rng is required for the 'random' first-click strategy (use click_rng).")
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            raise ValueError("mask must contain at least one pixel.")
        index = int(rng.integers(rows.size))
        return _as_click(int(rows[index]), int(cols[index]), 1)
    raise ValueError(f"strategy must be one of {FIRST_CLICK_STRATEGIES}, got {strategy!r}.")


def largest_error_region(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, int] | None:
    """The largest connected region of false negatives or false positives, with the label a user would give it
    (1 = add it, 0 = remove it); None when the prediction is exact."""
    best = None
    for error, label in ((gt & ~pred, 1), (pred & ~gt, 0)):
        if not error.any():
            continue
        components, count = ndimage.label(error)
        sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
        index = int(np.argmax(sizes))
        if best is None or sizes[index] > best[0]:
            best = (int(sizes[index]), components == index + 1, label)
    return None if best is None else (best[1], best[2])


def next_click(gt: np.ndarray, pred: np.ndarray) -> Click | None:
    """The corrective click at the centre of the largest error region; None when there is nothing to correct."""
    if gt.shape != pred.shape:
        raise ValueError(f"pred must have the ground-truth shape {gt.shape}, got {pred.shape}.")
    found = largest_error_region(gt.astype(bool), pred.astype(bool))
    if found is None:
        return None
    region, label = found
    return _as_click(*region_center(region), label)
