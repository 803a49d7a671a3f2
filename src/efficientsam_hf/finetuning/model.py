"""`EfficientSamForFinetuning`: an `EfficientSamModel` plus SAM's training objective, as one `forward` with `labels`.

One forward pass per step does everything (image encoder once, the decoder once per prompting round), so the module
works unchanged under `Trainer`, DDP (torchrun / accelerate) and gradient accumulation: DDP needs every parameter
use inside a single `forward` of the wrapped module.

Rounds: round 0 uses the collated first prompts (single-point queries get the 3 multimask outputs, boxes the single
output); each of the `num_correction_clicks` further rounds appends one click drawn from the error region of the
previous round's prediction (the output with the highest predicted IoU) and runs the decoder again, single output.
The loss is the mean over rounds of the mean over real queries of `20 * focal + dice + iou_weight * mse(iou)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from ..modeling_efficientsam import EfficientSamModel
from .losses import mask_iou, masked_mean, segmentation_loss
from .prompts import sample_correction_clicks


@dataclass
class EfficientSamFinetuningOutput(ModelOutput):
    """
    Args:
        loss: the training loss (scalar).
        pred_masks `(B, Q, 256, 256)`: last round's low-res logits, per query the output with the highest predicted
            IoU (what inference would return).
        iou_scores `(B, Q)`: their predicted IoU.
        low_res_iou `(B, Q)`: their actual IoU with the 256x256 targets.
        mask_loss, iou_loss: the two parts of `loss` (detached), for logging.
    """

    loss: torch.Tensor | None = None
    pred_masks: torch.Tensor | None = None
    iou_scores: torch.Tensor | None = None
    low_res_iou: torch.Tensor | None = None
    mask_loss: torch.Tensor | None = None
    iou_loss: torch.Tensor | None = None


class EfficientSamForFinetuning(nn.Module):
    """Wraps an `EfficientSamModel` (`.model`, saved and loaded as usual) with the finetuning objective.

    It deliberately has no `config` attribute: `Trainer` would otherwise try to align tokenizer special tokens with
    it and fail on a processor without a tokenizer (transformers 5.24).

    Args:
        model (`EfficientSamModel`): the model to train.
        processor (`EfficientSamProcessor`): converts correction clicks from the 256x256 low-res frame to the model
            frame (the only coordinate conversion this module needs).
        num_correction_clicks (`int`): extra prompting rounds, each adding one error-region click (0 disables).
        focal_weight, dice_weight, iou_weight (`float`): loss weights (SAM: 20, 1, 1).
    """

    def __init__(
        self,
        model: EfficientSamModel,
        processor,
        num_correction_clicks: int = 0,
        focal_weight: float = 20.0,
        dice_weight: float = 1.0,
        iou_weight: float = 1.0,
    ):
        super().__init__()
        max_points = model.config.prompt_encoder_config.max_num_points
        if not 0 <= num_correction_clicks <= max_points - 2:
            raise ValueError(
                f"num_correction_clicks must lie in [0, {max_points - 2}] (EfficientSAM takes {max_points} points per "
                f"query and a box uses 2), got {num_correction_clicks}."
            )
        self.model = model
        self.processor = processor
        self.num_correction_clicks = num_correction_clicks
        self.loss_weights = {"focal_weight": focal_weight, "dice_weight": dice_weight}
        self.iou_weight = iou_weight

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_points: torch.Tensor,
        input_labels: torch.Tensor,
        labels: torch.Tensor,
        label_mask: torch.Tensor,
        multimask: torch.Tensor,
        click_seeds: torch.Tensor | None = None,
        original_sizes: torch.Tensor | None = None,
        reshaped_input_sizes: torch.Tensor | None = None,
    ) -> EfficientSamFinetuningOutput:
        encoder = self.model.vision_encoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and any(p.requires_grad for p in encoder.parameters())):
            image_embeddings = encoder(pixel_values, return_dict=True).last_hidden_state

        targets = labels.float()
        total, mask_total, iou_total = 0.0, 0.0, 0.0
        points, point_labels = input_points, input_labels
        for round_index in range(self.num_correction_clicks + 1):
            use_multimask = multimask if round_index == 0 else torch.zeros_like(multimask)
            terms, masks, scores = self._decode(
                image_embeddings, points, point_labels, targets, use_multimask, label_mask
            )
            mask_part = masked_mean(terms["mask_loss"], label_mask)
            iou_part = masked_mean(terms["iou_loss"], label_mask)
            total = total + mask_part + self.iou_weight * iou_part
            mask_total, iou_total = mask_total + mask_part.detach(), iou_total + iou_part.detach()
            if round_index < self.num_correction_clicks:
                new_points, new_labels = self._correction_clicks(masks, targets, click_seeds, round_index)
                points = torch.cat([points, new_points], dim=2)
                point_labels = torch.cat([point_labels, new_labels], dim=2)

        rounds = self.num_correction_clicks + 1
        return EfficientSamFinetuningOutput(
            loss=total / rounds,
            pred_masks=masks,
            iou_scores=scores,
            low_res_iou=mask_iou(masks.detach(), targets),
            mask_loss=mask_total / rounds,
            iou_loss=iou_total / rounds,
        )

    def _decode(self, image_embeddings, points, point_labels, targets, multimask, label_mask):
        """Run the decoder in the mode(s) the queries need; per query, the loss terms of its mode and the output with
        the highest predicted IoU."""
        terms, masks, scores = {}, None, None
        for mode in (True, False):
            selected = (multimask if mode else ~multimask) & label_mask
            if not selected.any():
                continue
            outputs = self.model(
                image_embeddings=image_embeddings,
                input_points=points,
                input_labels=point_labels,
                multimask_output=mode,
            )
            loss = segmentation_loss(outputs.pred_masks, outputs.iou_scores, targets, **self.loss_weights)
            best = outputs.iou_scores.argmax(-1, keepdim=True)
            mode_scores = outputs.iou_scores.gather(-1, best).squeeze(-1)
            index = best[..., None, None].expand(-1, -1, 1, *outputs.pred_masks.shape[-2:])
            mode_masks = outputs.pred_masks.gather(2, index).squeeze(2)
            for name in ("mask_loss", "iou_loss"):
                value = getattr(loss, name)
                terms[name] = value if name not in terms else torch.where(selected, value, terms[name])
            masks = mode_masks if masks is None else torch.where(selected[..., None, None], mode_masks, masks)
            scores = mode_scores if scores is None else torch.where(selected, mode_scores, scores)
        return terms, masks, scores

    def _correction_clicks(self, masks, targets, click_seeds, round_index):
        """One click per query from the error region, converted from the 256x256 frame by the processor."""
        batch, queries = masks.shape[:2]
        points, labels = [], []
        for b in range(batch):
            generator = torch.Generator(device="cpu")
            seed = 0 if click_seeds is None else int(click_seeds[b])
            generator.manual_seed((seed + 1_000_003 * (round_index + 1)) % (2**63))
            p, lab = sample_correction_clicks(masks[b].detach().cpu() > 0, targets[b].cpu() > 0.5, generator)
            points.append(p.unsqueeze(1))
            labels.append(lab.unsqueeze(1))
        low_res_size = tuple(targets.shape[-2:])
        converted = self.processor.prepare_prompts(
            [low_res_size] * batch, input_points=torch.stack(points), input_labels=torch.stack(labels)
        )
        device = masks.device
        return converted["input_points"].to(device), converted["input_labels"].to(device)
