"""Focal + dice + IoU-MSE loss on a case computed by hand, and the minimum over multimask outputs."""

from __future__ import annotations

import math

import pytest
import torch

from efficientsam_hf.finetuning import dice_loss, mask_iou, segmentation_loss, sigmoid_focal_loss


def test_loss_terms_match_hand_computation():
    # Two pixels: logits 0 and ln 3 (p = 0.5, 0.75), targets 1 and 0.
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 1, 1, 2)
    targets = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    focal_1 = 0.25 * (1 - 0.5) ** 2 * math.log(2)  # alpha_t = 0.25 on the positive, -log p = log 2
    focal_2 = 0.75 * 0.75**2 * math.log(4)  # alpha_t = 0.75 on the negative, -log(1 - p) = log 4
    focal = (focal_1 + focal_2) / 2
    dice = 1 - (2 * 0.5 + 1) / (1.25 + 1 + 1)
    # Binarised at 0: prediction [0, 1] vs target [1, 0] -> IoU 0; the head predicted 0.5.
    out = segmentation_loss(logits, torch.tensor([[[0.5]]]), targets)
    assert out.focal_loss.item() == pytest.approx(focal, rel=1e-5)
    assert out.dice_loss.item() == pytest.approx(dice, rel=1e-5)
    assert out.mask_loss.item() == pytest.approx(20 * focal + dice, rel=1e-5)
    assert out.actual_iou.item() == 0.0
    assert out.iou_loss.item() == pytest.approx(0.25, rel=1e-6)
    assert sigmoid_focal_loss(logits, targets.unsqueeze(2)).item() == pytest.approx(focal, rel=1e-5)
    assert dice_loss(logits, targets.unsqueeze(2)).item() == pytest.approx(dice, rel=1e-5)


def test_minimum_over_multimask_outputs_and_iou_mse_over_all_outputs():
    targets = torch.tensor([[1.0, 0.0]]).view(1, 1, 1, 2)
    good = torch.tensor([8.0, -8.0])
    bad = torch.tensor([-8.0, 8.0])
    logits = torch.stack([bad, good, bad]).view(1, 1, 3, 1, 2)
    scores = torch.tensor([[[0.0, 1.0, 1.0]]])  # actual IoUs are 0, 1, 0
    out = segmentation_loss(logits, scores, targets)
    assert out.best_output.item() == 1
    only_good = segmentation_loss(good.view(1, 1, 1, 1, 2), torch.ones(1, 1, 1), targets)
    assert out.mask_loss.item() == pytest.approx(only_good.mask_loss.item())
    assert out.iou_loss.item() == pytest.approx(1 / 3)  # (0 + 0 + 1) / 3


def test_mask_iou_and_shape_validation():
    logits = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert mask_iou(logits, target).item() == pytest.approx(2 / 3)
    assert mask_iou(-torch.ones(2, 2), torch.zeros(2, 2)).item() == 1.0  # both empty
    with pytest.raises(ValueError, match="targets must have shape"):
        segmentation_loss(torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 2, 3), torch.zeros(1, 2, 5, 5))
