"""SAMI augmentation without torchvision: RandomResizedCrop + horizontal flip + ImageNet normalisation, drawn
from an explicit `torch.Generator` so that a sample's augmentation depends only on (seed, epoch, index)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def to_normalized_tensor(image: Image.Image, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD) -> torch.Tensor:
    """RGB PIL image -> `(3, H, W)` float tensor, `(x / 255 - mean) / std`."""
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (array - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def as_rgb(image) -> Image.Image:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image or a numpy array, got {type(image).__name__}.")
    return image.convert("RGB") if image.mode != "RGB" else image


@dataclass
class SamiTransform:
    """RandomResizedCrop(size, scale, ratio) + flip with probability `flip_prob` + normalise (MAE's recipe).

    Returns `pixel_values (3, size, size)`, `crop_boxes (4,)` = the crop as `(x0, y0, x1, y1)` fractions of the
    original image, and `flipped` (bool tensor), so that precomputed whole-image teacher features can be cropped
    to match.
    """

    size: int = 224
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5

    def __post_init__(self):
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}.")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}.")

    def crop_params(self, width: int, height: int, generator: torch.Generator) -> tuple[float, float, float, float]:
        """torchvision's RandomResizedCrop.get_params: `(left, top, crop_width, crop_height)` in pixels."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * _uniform(generator, *self.scale)
            aspect = math.exp(_uniform(generator, *log_ratio))
            crop_w = round(math.sqrt(target_area * aspect))
            crop_h = round(math.sqrt(target_area / aspect))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                left = int(torch.randint(0, width - crop_w + 1, (), generator=generator))
                top = int(torch.randint(0, height - crop_h + 1, (), generator=generator))
                return left, top, crop_w, crop_h
        in_ratio = width / height  # fallback: central crop clipped to the ratio range
        if in_ratio < self.ratio[0]:
            crop_w, crop_h = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            crop_w, crop_h = round(height * self.ratio[1]), height
        else:
            crop_w, crop_h = width, height
        return (width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h

    def __call__(self, image, generator: torch.Generator) -> dict[str, torch.Tensor]:
        image = as_rgb(image)
        width, height = image.size
        left, top, crop_w, crop_h = self.crop_params(width, height, generator)
        flipped = bool(torch.rand((), generator=generator) < self.flip_prob)
        box = (left, top, left + crop_w, top + crop_h)
        crop = image.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
        if flipped:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return {
            "pixel_values": to_normalized_tensor(crop),
            "crop_boxes": torch.tensor([box[0] / width, box[1] / height, box[2] / width, box[3] / height]),
            "flipped": torch.tensor(flipped),
        }


def whole_image(image, size: int) -> torch.Tensor:
    """The un-augmented image stretched to `size x size` and normalised (what the precomputed teacher sees)."""
    return to_normalized_tensor(as_rgb(image).resize((size, size), Image.Resampling.BILINEAR))


__all__ = ["SamiTransform", "as_rgb", "to_normalized_tensor", "whole_image"]
