"""Prompt sampling as SAM trains (Kirillov et al., 2023, appendix A "Training algorithm"), for EfficientSAM.

What is implemented of SAM's interactive schedule:

- per image, up to K masks are drawn at random (SAM uses up to 64 per GPU);
- each mask's first prompt is, with equal probability (configurable), a box or a foreground point. The box is the
  mask's bounding box with Gaussian noise on every coordinate, standard deviation 10% of the box side length capped
  at 20 pixels (SAM's "to a maximum of 20 pixels", read as a cap on the standard deviation); the point is drawn
  uniformly from the mask;
- optionally, correction clicks: each further click is drawn uniformly from the error region between the previous
  prediction and the ground truth, positive on a false negative and negative on a false positive
  (`sample_correction_clicks`, run by the trainer between decoder passes).

What is not: SAM feeds the previous round's low-resolution logits back as a mask prompt and runs 2 extra rounds with
no new point; EfficientSAM has no mask prompt, so those rounds would change nothing and are skipped. EfficientSAM
takes at most 6 points per query (a box counts as 2), which caps the clicks at 4 after a box and 5 after a point
(SAM uses 8).

All coordinates here are `(x, y)` pixel indices in the frame of the mask they were drawn from (original image pixels,
or the 256x256 low-res frame for correction clicks); `EfficientSamProcessor` converts them to the model frame.
Randomness comes from explicit generators so that a resumed run draws the same prompts as an uninterrupted one.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

POSITIVE, NEGATIVE, PADDING, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = 1, 0, -1, 2, 3


def sample_generator(*keys: int | str) -> np.random.Generator:
    """A numpy generator seeded from a tuple of keys (e.g. seed, epoch, sample index), stable across processes."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight `(x0, y0, x1, y1)` pixel box of a non-empty `(H, W)` mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask is empty: a box prompt needs at least one foreground pixel.")
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def noisy_box(
    box: np.ndarray, height: int, width: int, rng: np.random.Generator, noise_ratio: float = 0.1, max_noise: float = 20
) -> np.ndarray:
    """SAM's box jitter: each coordinate moves by N(0, std), std = min(noise_ratio * side, max_noise) pixels
    (the box width for x, the height for y), then the box is clipped to the image and kept ordered."""
    x0, y0, x1, y1 = (float(v) for v in box)
    std_x = min(noise_ratio * (x1 - x0), max_noise)
    std_y = min(noise_ratio * (y1 - y0), max_noise)
    noise = rng.normal(size=4) * np.array([std_x, std_y, std_x, std_y])
    x0, y0, x1, y1 = np.array([x0, y0, x1, y1]) + noise
    x0, x1 = np.clip(sorted((x0, x1)), 0, width)
    y0, y1 = np.clip(sorted((y0, y1)), 0, height)
    return np.array([x0, y0, x1, y1], dtype=np.float64)


def sample_points_in_mask(mask: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """`num_points` `(x, y)` pixel indices drawn uniformly (without replacement while possible) from the mask."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("mask is empty: a point prompt needs at least one foreground pixel.")
    chosen = rng.choice(rows.size, size=num_points, replace=rows.size < num_points)
    return np.stack([cols[chosen], rows[chosen]], axis=-1).astype(np.float64)


def sample_first_prompt(
    mask: np.ndarray, rng: np.random.Generator, box_probability: float = 0.5, noise: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The first prompt of one mask as `(points (N, 2), labels (N,))` in the mask's pixel frame: a box (two corner
    points labelled 2 and 3) with probability `box_probability`, else one positive point."""
    height, width = mask.shape
    if rng.random() < box_probability:
        box = mask_box(mask)
        box[2:] += 1  # pixel indices -> the box's outer edge, as COCO/SA-1B boxes (x + w)
        box = np.minimum(box, [width, height, width, height])
        if noise:
            box = noisy_box(box, height, width, rng)
        return box.reshape(2, 2), np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT])
    return sample_points_in_mask(mask, 1, rng), np.array([POSITIVE])


def sample_correction_clicks(
    predictions: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One correction click per mask, uniformly from the error region of the previous prediction.

    Args:
        predictions (`torch.BoolTensor` of shape `(..., h, w)`): binarized previous predictions.
        targets (`torch.BoolTensor` of shape `(..., h, w)`): ground truth at the same resolution.
        generator: the random generator (the trainer seeds it per step so resumed runs match).

    Returns:
        points `(..., 2)` float as `(x, y)` pixel indices of the `(h, w)` frame, and labels `(...)`: 1 where the click
        lies on a false negative, 0 on a false positive, -1 (with point `(-1, -1)`) where the prediction is exact.
    """
    errors = (predictions != targets).flatten(-2).float()
    width = targets.shape[-1]
    has_error = errors.sum(-1) > 0
    weights = torch.where(has_error.unsqueeze(-1), errors, torch.ones_like(errors))
    flat = torch.multinomial(weights.reshape(-1, weights.shape[-1]), 1, generator=generator).reshape(has_error.shape)
    xs, ys = (flat % width).float(), torch.div(flat, width, rounding_mode="floor").float()
    on_target = targets.flatten(-2).gather(-1, flat.unsqueeze(-1)).squeeze(-1)
    labels = torch.where(on_target, POSITIVE, NEGATIVE)
    labels = torch.where(has_error, labels, PADDING)
    points = torch.stack([xs, ys], dim=-1)
    points = torch.where(has_error.unsqueeze(-1), points, torch.full_like(points, -1.0))
    return points, labels
