"""The frozen SAMI teacher: any transformers vision model turned into a feature map, and the one function that
resamples (a crop of) a feature map onto the student's token grid.

Interface (what `SamiTeacher` needs from a wrapped model): `model(pixel_values=x)` returns an output whose
`last_hidden_state` is either a feature map `(B, C, H, W)` (SAM's image encoder) or tokens `(B, P + H*W, C)` with
`P` leading special tokens (ViT, DINOv2, ...), for `x` of shape `(B, 3, image_size, image_size)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

DEFAULT_TEACHER = "facebook/sam-vit-huge"


class SamiTeacher(nn.Module):
    """A frozen vision model seen as `pixel_values (B, 3, h, w), ImageNet-normalised -> features (B, C, H, W)`.

    Args:
        model: the wrapped transformers vision model (see the module docstring for the interface).
        image_size: input side the model needs; inputs are resized (bilinear) to it. Defaults to
            `model.config.image_size`.
        hidden_size: feature channels. Defaults to `config.output_channels` (SAM) or `config.hidden_size`.
        num_prefix_tokens: special tokens before the patch tokens in a `(B, N, C)` output; inferred from
            `config.patch_size` when `None`.
        image_mean, image_std: the normalisation the model was trained with (ImageNet's by default, which is
            also SAM's); inputs are re-normalised from ImageNet statistics when they differ.
    """

    def __init__(
        self,
        model: nn.Module,
        image_size: int | None = None,
        hidden_size: int | None = None,
        num_prefix_tokens: int | None = None,
        image_mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
        image_std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
    ):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        config = getattr(model, "config", None)
        image_size = image_size if image_size is not None else getattr(config, "image_size", None)
        if isinstance(image_size, (list, tuple)):
            image_size = image_size[0]
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(
                f"image_size must be a positive int (or the model's config must have one), got {image_size!r}."
            )
        if hidden_size is None:
            hidden_size = getattr(config, "output_channels", None) or getattr(config, "hidden_size", None)
        if not isinstance(hidden_size, int):
            raise ValueError(
                f"hidden_size must be given for a model whose config has no hidden_size, got {hidden_size!r}."
            )
        self.model = model.eval().requires_grad_(False)
        self.image_size = image_size
        self.hidden_size = hidden_size
        self.num_prefix_tokens = num_prefix_tokens
        shift = torch.tensor(IMAGENET_DEFAULT_MEAN) - torch.tensor(image_mean)
        self.register_buffer("scale", (torch.tensor(IMAGENET_DEFAULT_STD) / torch.tensor(image_std)).view(1, 3, 1, 1))
        self.register_buffer("shift", (shift / torch.tensor(image_std)).view(1, 3, 1, 1))
        self.train(False)

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_TEACHER, model_class=None, **kwargs) -> SamiTeacher:
        """Load a teacher from a Hub id or folder: `SamVisionModel` (SAM's image encoder; a full SAM checkpoint's
        `vision_encoder.*` weights) when the config is SAM's, else `AutoModel`. Extra kwargs go to `__init__`."""
        from transformers import AutoConfig, AutoModel, SamVisionModel

        if model_class is None:
            model_type = AutoConfig.from_pretrained(name_or_path).model_type
            model_class = SamVisionModel if model_type in ("sam", "sam_vision_model") else AutoModel
        return cls(model_class.from_pretrained(name_or_path), **kwargs)

    def train(self, mode: bool = True) -> SamiTeacher:
        return super().train(False)  # frozen: always in eval mode

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised `(B, 3, h, w)` -> teacher feature map `(B, C, H, W)` in float32."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(
                f"pixel_values must have shape (batch_size, 3, height, width), got {tuple(pixel_values.shape)}."
            )
        parameter = next(self.model.parameters())
        if parameter.device != pixel_values.device:
            self.to(pixel_values.device)
        inputs = pixel_values.float()
        if tuple(inputs.shape[-2:]) != (self.image_size, self.image_size):
            inputs = F.interpolate(
                inputs, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        inputs = (inputs * self.scale + self.shift).to(parameter.dtype)
        hidden = self.model(pixel_values=inputs).last_hidden_state
        if hidden.ndim == 4:
            return hidden.float()
        return self._tokens_to_map(hidden).float()

    def _tokens_to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        patch_size = getattr(getattr(self.model, "config", None), "patch_size", None)
        prefix = self.num_prefix_tokens
        if prefix is None:
            side = self.image_size // patch_size if isinstance(patch_size, int) else math.isqrt(tokens.shape[1])
            prefix = tokens.shape[1] - side * side
        side = math.isqrt(tokens.shape[1] - prefix)
        if prefix < 0 or side * side != tokens.shape[1] - prefix:
            raise ValueError(
                f"Cannot make a square feature map from {tokens.shape[1]} tokens with {prefix} prefix tokens; "
                "pass num_prefix_tokens."
            )
        patches = tokens[:, prefix:]
        return patches.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


def resample_to_grid(
    features: torch.Tensor,
    grid: tuple[int, int],
    crop_boxes: torch.Tensor | None = None,
    flipped: torch.Tensor | None = None,
) -> torch.Tensor:
    """Average a crop of each feature map onto a `grid` of cells, returning tokens `(B, gh*gw, C)` row-major.

    `crop_boxes` are `(x0, y0, x1, y1)` fractions of the map (default: all of it); `flipped` mirrors the result
    horizontally (the crop was flipped). Each cell is the mean of `s x s` bilinear samples, with `s` large enough
    to cover the source pixels under the cell, so downsampling 64x64 -> 14x14 is an area average, not aliasing.
    """
    batch, _, height, width = features.shape
    grid_h, grid_w = grid
    device = features.device
    if crop_boxes is None:
        crop_boxes = torch.tensor([0.0, 0.0, 1.0, 1.0], device=device).expand(batch, 4)
    crop_boxes = crop_boxes.to(device=device, dtype=torch.float32)
    if tuple(crop_boxes.shape) != (batch, 4):
        raise ValueError(f"crop_boxes must have shape ({batch}, 4), got {tuple(crop_boxes.shape)}.")
    extent = torch.maximum(
        (crop_boxes[:, 2] - crop_boxes[:, 0]).max() * width / grid_w,
        (crop_boxes[:, 3] - crop_boxes[:, 1]).max() * height / grid_h,
    )
    samples = max(1, math.ceil(float(extent)))
    steps_x = (torch.arange(grid_w * samples, device=device, dtype=torch.float32) + 0.5) / (grid_w * samples)
    steps_y = (torch.arange(grid_h * samples, device=device, dtype=torch.float32) + 0.5) / (grid_h * samples)
    x0, y0, x1, y1 = crop_boxes.unbind(1)
    xs = x0[:, None] + steps_x[None] * (x1 - x0)[:, None]  # (B, gw*s) in [0, 1]
    ys = y0[:, None] + steps_y[None] * (y1 - y0)[:, None]
    sample_grid = torch.stack(
        [xs[:, None, :].expand(-1, ys.shape[1], -1), ys[:, :, None].expand(-1, -1, xs.shape[1])], dim=-1
    )
    sampled = F.grid_sample(features, sample_grid * 2 - 1, mode="bilinear", padding_mode="border", align_corners=False)
    cells = F.avg_pool2d(sampled, samples) if samples > 1 else sampled
    if flipped is not None:
        flipped = flipped.to(device=device, dtype=torch.bool).view(batch, 1, 1, 1)
        cells = torch.where(flipped, cells.flip(-1), cells)
    return cells.flatten(2).transpose(1, 2)


__all__ = ["DEFAULT_TEACHER", "SamiTeacher", "resample_to_grid"]
