"""SAM's finetuning loss on EfficientSAM's low-resolution logits: focal + dice (20:1) and IoU-head MSE.

Per query, every returned mask output `j` gets `20 * focal_j + dice_j` against the ground truth resized to the
logits' 256x256 frame. Ambiguous prompts (a single point) are run with the 3 multimask outputs and only the output
with the lowest mask loss is backpropagated (SAM's "minimum over outputs"); other prompts return one mask, so the
minimum is that mask. The IoU head is trained with the MSE between its prediction and the actual IoU of each
returned output (all of them, so the head learns to rank the 3 outputs, which is how they are chosen at inference).

Reductions: focal is the mean over pixels, dice is `1 - (2|p t| + 1) / (|p| + |t| + 1)` with `p = sigmoid(logits)`,
and the total is the mean over real (not padded) queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class SegmentationLossOutput:
    """Per-query terms, each `(batch_size, num_queries)`, and the index of the output that was kept."""

    mask_loss: torch.Tensor
    focal_loss: torch.Tensor
    dice_loss: torch.Tensor
    iou_loss: torch.Tensor
    best_output: torch.Tensor
    actual_iou: torch.Tensor


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """Focal loss (Lin et al., 2017) averaged over the last two (pixel) dimensions. `alpha < 0` disables weighting."""
    probs = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss over the last two (pixel) dimensions."""
    probs = torch.sigmoid(logits).flatten(-2)
    targets = targets.flatten(-2)
    numerator = 2 * (probs * targets).sum(-1) + smooth
    denominator = probs.sum(-1) + targets.sum(-1) + smooth
    return 1 - numerator / denominator


def mask_iou(logits: torch.Tensor, targets: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """IoU of `logits > threshold` with binary targets over the last two dimensions (an empty union counts as 1)."""
    predictions = logits > threshold
    targets = targets > 0.5
    intersection = (predictions & targets).flatten(-2).sum(-1).float()
    union = (predictions | targets).flatten(-2).sum(-1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


def segmentation_loss(
    pred_masks: torch.Tensor,
    iou_scores: torch.Tensor,
    targets: torch.Tensor,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> SegmentationLossOutput:
    """Per-query loss terms.

    Args:
        pred_masks (`(B, Q, M, h, w)`): low-resolution logits (`M` is 3 for multimask output, else 1).
        iou_scores (`(B, Q, M)`): the IoU head's predictions.
        targets (`(B, Q, h, w)`): ground-truth masks in {0, 1} at the logits' resolution.
    """
    if pred_masks.ndim != 5 or iou_scores.shape != pred_masks.shape[:3]:
        raise ValueError(
            f"pred_masks must be (B, Q, M, h, w) and iou_scores (B, Q, M); got {tuple(pred_masks.shape)} and "
            f"{tuple(iou_scores.shape)}."
        )
    if targets.shape != pred_masks.shape[:2] + pred_masks.shape[3:]:
        raise ValueError(
            f"targets must have shape {tuple(pred_masks.shape[:2] + pred_masks.shape[3:])} (B, Q, h, w) to match "
            f"pred_masks, got {tuple(targets.shape)}."
        )
    logits = pred_masks.float()
    expanded = targets.float().unsqueeze(2).expand_as(logits)
    focal = sigmoid_focal_loss(logits, expanded, focal_alpha, focal_gamma)  # (B, Q, M)
    dice = dice_loss(logits, expanded)
    per_output = focal_weight * focal + dice_weight * dice
    best = per_output.argmin(dim=-1, keepdim=True)
    actual_iou = mask_iou(logits.detach(), expanded)
    iou_loss = F.mse_loss(iou_scores.float(), actual_iou, reduction="none").mean(-1)
    return SegmentationLossOutput(
        mask_loss=per_output.gather(-1, best).squeeze(-1),
        focal_loss=focal.gather(-1, best).squeeze(-1),
        dice_loss=dice.gather(-1, best).squeeze(-1),
        iou_loss=iou_loss,
        best_output=best.squeeze(-1),
        actual_iou=actual_iou.gather(-1, best).squeeze(-1),
    )


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `valid` (0 when nothing is valid, keeping the graph)."""
    valid = valid.to(values.dtype)
    return (values * valid).sum() / valid.sum().clamp(min=1)
