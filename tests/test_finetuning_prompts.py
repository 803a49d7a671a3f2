"""SAM-style prompt sampling: points inside masks, jittered boxes, correction clicks from the error region."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efficientsam_hf.finetuning.prompts import (
    mask_box,
    noisy_box,
    sample_correction_clicks,
    sample_first_prompt,
    sample_generator,
    sample_points_in_mask,
)


def _mask():
    mask = np.zeros((50, 80), dtype=np.uint8)
    mask[10:30, 20:60] = 1
    return mask


def test_points_lie_inside_the_mask_and_generators_are_reproducible():
    points = sample_points_in_mask(_mask(), 50, sample_generator(0, 1, 2))
    assert _mask()[points[:, 1].astype(int), points[:, 0].astype(int)].all()
    again = sample_points_in_mask(_mask(), 50, sample_generator(0, 1, 2))
    other = sample_points_in_mask(_mask(), 50, sample_generator(0, 2, 2))
    assert np.array_equal(points, again) and not np.array_equal(points, other)


def test_box_noise_scales_with_the_box_and_is_capped():
    assert mask_box(_mask()).tolist() == [20, 10, 59, 29]
    rng = sample_generator("noise")
    box = np.array([100.0, 100.0, 140.0, 200.0])  # width 40 -> std 4; height 100 -> std 10
    offsets = np.stack([noisy_box(box, 1000, 1000, rng) - box for _ in range(2000)])
    std = offsets.std(0)
    assert np.allclose(std, [4, 10, 4, 10], rtol=0.1)
    big = np.array([0.0, 0.0, 900.0, 900.0])
    capped = np.stack([noisy_box(big, 1000, 1000, rng) - big for _ in range(2000)])
    assert capped[:, 2:].std(0) == pytest.approx([20, 20], rel=0.1)  # std capped at 20 px
    assert (capped[:, :2] >= 0).all()  # clipped to the image
    exact, labels = sample_first_prompt(_mask(), rng, box_probability=1.0, noise=False)
    assert exact.tolist() == [[20, 10], [60, 30]] and labels.tolist() == [2, 3]


def test_correction_clicks_come_from_the_error_region_with_the_right_label():
    target = torch.zeros(3, 8, 8, dtype=torch.bool)
    target[:, 2:6, 2:6] = True
    prediction = target.clone()
    prediction[0, 2:6, 2:4] = False  # query 0: false negatives only -> positive click
    prediction[1, 0, :] = True  # query 1: false positives only -> negative click
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        points, labels = sample_correction_clicks(prediction, target, generator)
        x0, y0 = points[0].long().tolist()
        assert labels[0] == 1 and 2 <= x0 < 4 and 2 <= y0 < 6
        assert labels[1] == 0 and points[1, 1] == 0
        assert labels[2] == -1 and points[2].tolist() == [-1.0, -1.0]  # exact prediction: no click
