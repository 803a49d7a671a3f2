"""Finetuning EfficientSAM on SA-1B-format or COCO data with `transformers.Trainer` (SAM's recipe).

`data` reads the annotations, `prompts` draws SAM-style prompts, `collator` builds batches, `losses` holds focal +
dice + IoU MSE, `model` wraps an `EfficientSamModel` with that objective, `trainer` adds checkpointing and mIoU.
The script is `training/run_finetuning.py`.
"""

from .collator import EfficientSamFinetuningCollator
from .data import decode_masks, load_coco_dataset, load_sa1b_dataset, with_decoded_masks
from .losses import dice_loss, mask_iou, segmentation_loss, sigmoid_focal_loss
from .model import EfficientSamFinetuningOutput, EfficientSamForFinetuning
from .trainer import EfficientSamFinetuningTrainer, EpochCallback, compute_miou

__all__ = [
    "EfficientSamFinetuningCollator",
    "EfficientSamFinetuningOutput",
    "EfficientSamFinetuningTrainer",
    "EfficientSamForFinetuning",
    "EpochCallback",
    "compute_miou",
    "decode_masks",
    "dice_loss",
    "load_coco_dataset",
    "load_sa1b_dataset",
    "mask_iou",
    "segmentation_loss",
    "sigmoid_focal_loss",
    "with_decoded_masks",
]
