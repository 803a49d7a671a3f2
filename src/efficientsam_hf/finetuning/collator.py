"""Batches for finetuning: pick up to K masks per image, decode only those, draw their prompts, run the processor.

The collator is where a dataset row (encoded annotations, see `data.py`) becomes model tensors. Its randomness is a
pure function of `(seed, epoch, sample index)`, never of a global generator, so a run resumed from a checkpoint sees
exactly the batches an uninterrupted run would (the trainer's `EpochCallback` keeps `epoch` current).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from .data import decode_masks
from .prompts import POSITIVE, sample_first_prompt, sample_generator

LOW_RES_MASK_SIZE = 256


class EfficientSamFinetuningCollator:
    """Turns rows of `load_sa1b_dataset` / `load_coco_dataset` into a batch for `EfficientSamForFinetuning`.

    Args:
        processor (`EfficientSamProcessor`): converts images and prompts (original pixels) to the model frame; its
            image processor also stretches the ground-truth masks to the 256x256 frame of the low-res logits.
        max_masks_per_image (`int`): K, the number of masks (queries) drawn per image.
        box_probability (`float`): probability that a mask's first prompt is a box (else one point).
        box_noise (`bool`): jitter boxes as SAM does (training) or keep them tight (evaluation).
        seed (`int`): base seed of all sampling.
        train (`bool`): draw masks and prompts anew every epoch (training) or identically every time (evaluation).
        return_original_masks (`bool`): also return the chosen masks at the original size (`original_masks`, a list
            of `(Q_i, H, W)` bool tensors) for mIoU at full resolution.

    Returns batches with `pixel_values`, `input_points`, `input_labels` (boxes are two points labelled 2 and 3),
    `original_sizes`, `reshaped_input_sizes`, `labels` `(B, Q, 256, 256)` float, `label_mask` `(B, Q)` (real query,
    not padding), `multimask` `(B, Q)` (single-point prompt: train the best of the 3 outputs) and `click_seeds`
    `(B,)` (seeds for the correction clicks drawn during the forward pass).
    """

    def __init__(
        self,
        processor,
        max_masks_per_image: int = 16,
        box_probability: float = 0.5,
        box_noise: bool = True,
        seed: int = 0,
        train: bool = True,
        return_original_masks: bool = False,
    ):
        if not isinstance(max_masks_per_image, int) or max_masks_per_image < 1:
            raise ValueError(f"max_masks_per_image must be a positive integer, got {max_masks_per_image!r}.")
        if not 0.0 <= box_probability <= 1.0:
            raise ValueError(f"box_probability must lie in [0, 1], got {box_probability!r}.")
        self.processor = processor
        self.max_masks_per_image = max_masks_per_image
        self.box_probability = box_probability
        self.box_noise = box_noise
        self.seed = seed
        self.train = train
        self.return_original_masks = return_original_masks
        self.epoch = 0

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        images, points, labels, masks = [], [], [], []
        click_seeds = []
        for row in rows:
            rng = sample_generator(self.seed, self.epoch if self.train else "eval", int(row["index"]))
            image_masks = self._choose_masks(row, rng)
            query_points, query_labels = [], []
            for mask in image_masks:
                p, lab = sample_first_prompt(mask, rng, self.box_probability, noise=self.box_noise)
                query_points.append(p.tolist())
                query_labels.append(lab.tolist())
            images.append(Image.open(row["image_path"]).convert("RGB"))
            points.append(_pad_queries(query_points, 2))
            labels.append(_pad_queries(query_labels, 2, pad=-1))
            masks.append(image_masks)
            click_seeds.append(int(rng.integers(2**62)))

        batch = dict(self.processor(images=images, input_points=points, input_labels=labels, return_tensors="pt"))
        num_queries = batch["input_points"].shape[1]
        batch["labels"] = torch.zeros(len(rows), num_queries, LOW_RES_MASK_SIZE, LOW_RES_MASK_SIZE)
        batch["label_mask"] = torch.zeros(len(rows), num_queries, dtype=torch.bool)
        for b, image_masks in enumerate(masks):
            batch["labels"][b, : len(image_masks)] = self.low_res_targets(image_masks)
            batch["label_mask"][b, : len(image_masks)] = True
        prompt_labels = batch["input_labels"]
        one_point = (prompt_labels >= 0).sum(-1).eq(1) & (prompt_labels == POSITIVE).any(-1)
        batch["multimask"] = one_point & batch["label_mask"]
        batch["click_seeds"] = torch.tensor(click_seeds, dtype=torch.int64)
        if self.return_original_masks:
            batch["original_masks"] = [torch.from_numpy(m.astype(bool)) for m in masks]
        return batch

    def _choose_masks(self, row: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        """Up to K non-empty masks, chosen at random, decoded (only those)."""
        order = rng.permutation(len(row["segmentations"]))
        chosen = []
        for start in range(0, len(order), self.max_masks_per_image):
            candidates = order[start : start + self.max_masks_per_image - len(chosen)]
            decoded = decode_masks(row, candidates.tolist())
            chosen.extend(m for m in decoded if m.any())
            if len(chosen) >= self.max_masks_per_image:
                break
        if not chosen:
            raise ValueError(f"{row['image_path']}: every annotation decodes to an empty mask; nothing to train on.")
        return np.stack(chosen[: self.max_masks_per_image])

    def low_res_targets(self, masks: np.ndarray) -> torch.Tensor:
        """`(n, H, W)` masks -> `(n, 256, 256)` {0, 1} targets, stretched like the image (the image processor's
        bilinear resize, no normalization), then thresholded at 0.5."""
        stretched = self.processor.image_processor(
            [torch.from_numpy(m.astype(np.float32)) for m in masks],
            size={"height": LOW_RES_MASK_SIZE, "width": LOW_RES_MASK_SIZE},
            do_normalize=False,
            return_tensors="pt",
        )["pixel_values"][:, 0]
        return (stretched > 0.5).float()


def _pad_queries(queries: list[list], length: int, pad: Any = None) -> list[list]:
    """Pad each query's point list to `length` with padding points `(-1, -1)` (or labels `pad`)."""
    filler = [-1.0, -1.0] if pad is None else pad
    return [q + [filler] * (length - len(q)) for q in queries]
