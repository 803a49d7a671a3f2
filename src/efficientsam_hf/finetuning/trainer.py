"""`Trainer` glue for finetuning: checkpoints that are plain EfficientSAM folders, mIoU evaluation, epoch-aware data.

- Checkpoints and the final save hold the inner `EfficientSamModel` (`save_pretrained`) and the processor, so every
  `checkpoint-*` folder loads with `EfficientSamModel.from_pretrained`, the pipeline and the CLI; resuming loads
  those weights back into the wrapper.
- Evaluation computes per-query IoU at the original image resolution (masks upsampled by the image processor's
  `post_process_masks`) and reports `eval_miou`; padded queries are excluded.
- `EpochCallback` tells the collator the epoch so that masks and prompts change every epoch yet stay reproducible.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import EvalPrediction

from .losses import mask_iou

IGNORE_INDEX = -100


class EpochCallback(TrainerCallback):
    """Keep `collator.epoch` equal to the epoch being trained, also when resuming mid-epoch."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = math.floor((state.epoch or 0.0) + 1e-9)


class EfficientSamFinetuningTrainer(Trainer):
    """`Trainer` for `EfficientSamForFinetuning`.

    Args (beyond `Trainer`'s):
        eval_data_collator: collator for evaluation (tight boxes / fixed prompts, original-size masks); defaults to
            `data_collator`.
    """

    def __init__(self, *args, eval_data_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        # The model's `labels` are masks, not token ids: do not count "items" in them for loss scaling.
        self.model_accepts_loss_kwargs = False

    def get_eval_dataloader(self, eval_dataset=None):
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Loss, per-query IoU (padded queries are -100) and the query mask as "labels" for `compute_miou`."""
        inputs = self._prepare_inputs(inputs)
        original_masks = inputs.pop("original_masks", None)
        with torch.no_grad():
            outputs = model(**inputs)
        loss = outputs.loss.detach()
        if prediction_loss_only:
            return loss, None, None
        valid = inputs["label_mask"]
        if original_masks is None:
            ious = outputs.low_res_iou
        else:
            ious = self.full_resolution_iou(outputs.pred_masks, inputs["original_sizes"], original_masks)
        return loss, torch.where(valid, ious, IGNORE_INDEX), valid.long()

    def full_resolution_iou(self, low_res_logits, original_sizes, original_masks) -> torch.Tensor:
        """IoU of each query's mask, upsampled to its image's size by the image processor, with the original mask."""
        image_processor = self.processing_class.image_processor
        ious = torch.zeros(low_res_logits.shape[:2], device=low_res_logits.device)
        for b, masks in enumerate(original_masks):
            upsampled = image_processor.post_process_masks(
                low_res_logits[b : b + 1, : len(masks), None].float(), original_sizes[b : b + 1]
            )[0][:, 0]
            ious[b, : len(masks)] = mask_iou(upsampled.float() * 2 - 1, masks.to(upsampled.device).float())
        return ious

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the inner `EfficientSamModel` and the processor: a folder `from_pretrained` and the pipeline load."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        # Write into a temporary folder, then move each file into place with os.replace: a reader (or a resumed
        # run) never sees a half-written weights file.
        staging = tempfile.mkdtemp(prefix=".saving-", dir=output_dir)
        try:
            self.accelerator.unwrap_model(self.model).model.save_pretrained(staging, is_main_process=True)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(staging)
            torch.save(self.args, os.path.join(staging, "training_args.bin"))
            for name in os.listdir(staging):
                os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Load a checkpoint written by `_save` into the wrapper's inner model."""
        model = self.model if model is None else model
        path = os.path.join(resume_from_checkpoint, "model.safetensors")
        if not os.path.isfile(path):
            raise ValueError(f"resume_from_checkpoint {resume_from_checkpoint!r} has no model.safetensors.")
        inner = self.accelerator.unwrap_model(model).model
        inner.load_state_dict(load_file(path), strict=True)

    def _load_best_model(self) -> None:
        if self.state.best_model_checkpoint is not None:
            self._load_from_checkpoint(self.state.best_model_checkpoint)


def compute_miou(eval_prediction: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for `EfficientSamFinetuningTrainer`: mean IoU over real queries."""
    ious = np.asarray(eval_prediction.predictions, dtype=np.float64)
    valid = np.asarray(eval_prediction.label_ids) == 1
    return {"miou": float(ious[valid].mean()) if valid.any() else float("nan")}
