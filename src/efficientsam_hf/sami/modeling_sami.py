"""SAMI: masked image pretraining of the EfficientSAM ViT against a frozen teacher's features.

Reads top-down: the output, masking, the cross-attention decoder, then `EfficientSamForSamiPretraining`. The
student is `EfficientSamVisionEncoder` itself (minus the neck, which SAMI does not train), so its state_dict keys
are the `vision_encoder.*` keys of `EfficientSamModel` and transfer without renaming (see `export.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ..modeling_efficientsam import EfficientSamMLPBlock, EfficientSamPreTrainedModel, EfficientSamVisionEncoder
from .configuration_sami import EfficientSamSamiConfig
from .teacher import SamiTeacher, resample_to_grid


@dataclass
class EfficientSamSamiOutput(ModelOutput):
    """
    Output of [`EfficientSamForSamiPretraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Reconstruction loss over all tokens (present when teacher targets were available).
        logits (`torch.FloatTensor` of shape `(batch_size, num_tokens, teacher_hidden_size)`):
            Predicted teacher features, tokens in the original (row-major) order.
        mask (`torch.FloatTensor` of shape `(batch_size, num_tokens)`):
            1 where the token was hidden from the student, 0 where it was visible.
        ids_restore (`torch.LongTensor` of shape `(batch_size, num_tokens)`):
            Position of each original token in the shuffled (visible first) order.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_visible, hidden_size)`):
            The student encoder's output for the visible tokens.
        teacher_features (`torch.FloatTensor` of shape `(batch_size, num_tokens, teacher_hidden_size)`, *optional*):
            The targets, on the student's token grid.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None
    ids_restore: torch.LongTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    teacher_features: torch.FloatTensor | None = None


def random_masking(
    tokens: torch.Tensor, num_masked: int, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking by argsort of noise: the `num_masked` tokens with the largest noise are hidden.

    Returns `(visible_tokens (B, N - num_masked, C), mask (B, N), ids_shuffle (B, N), ids_restore (B, N))`.
    """
    batch, length, dim = tokens.shape
    if noise is None:
        noise = torch.rand(batch, length, device=tokens.device)
    elif tuple(noise.shape) != (batch, length):
        raise ValueError(
            f"noise must have shape (batch_size, num_tokens) = {(batch, length)}, got {tuple(noise.shape)}."
        )
    num_keep = length - num_masked
    ids_shuffle = torch.argsort(noise.to(tokens.device), dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :num_keep]
    visible = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
    mask = torch.ones(batch, length, device=tokens.device, dtype=tokens.dtype)
    mask[:, :num_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return visible, mask, ids_shuffle, ids_restore


def sincos_position_embedding(grid_size: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding `(1, grid_size**2, dim)` (MAE's decoder position embedding)."""
    if dim % 4 != 0:
        raise ValueError(f"decoder_hidden_size must be a multiple of 4 for the 2-D sin-cos embedding, got {dim}.")
    coords = torch.arange(grid_size, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(coords, coords, indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))

    def encode(positions):
        angles = positions.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(grid_x), encode(grid_y)], dim=1).float().unsqueeze(0)


class EfficientSamSamiCrossAttention(nn.Module):
    """Multi-head attention with separate query and key/value inputs (SDPA)."""

    def __init__(self, config: EfficientSamSamiConfig):
        super().__init__()
        dim = config.decoder_hidden_size
        self.num_heads = config.decoder_num_attention_heads
        self.head_dim = dim // self.num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        return states.reshape(states.shape[0], states.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys_values: torch.Tensor) -> torch.Tensor:
        query, key, value = (
            self._heads(self.q_proj(queries)),
            self._heads(self.k_proj(keys_values)),
            self._heads(self.v_proj(keys_values)),
        )
        output = F.scaled_dot_product_attention(query, key, value)
        return self.out_proj(output.transpose(1, 2).reshape(queries.shape))


class EfficientSamSamiDecoderLayer(GradientCheckpointingLayer):
    """One SAMI decoder block: the masked tokens attend to [visible tokens, masked tokens], then an MLP.

    Only the masked tokens are updated; the visible tokens (the encoder's output) are the same in every block.
    """

    def __init__(self, config: EfficientSamSamiConfig):
        super().__init__()
        dim = config.decoder_hidden_size
        self.query_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.key_value_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = EfficientSamSamiCrossAttention(config)
        self.mlp_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = EfficientSamMLPBlock(dim, int(dim * config.decoder_mlp_ratio), "gelu")

    def forward(self, masked_tokens: torch.Tensor, visible_tokens: torch.Tensor) -> torch.Tensor:
        keys_values = self.key_value_norm(torch.cat([visible_tokens, masked_tokens], dim=1))
        masked_tokens = masked_tokens + self.attn(self.query_norm(masked_tokens), keys_values)
        return masked_tokens + self.mlp(self.mlp_norm(masked_tokens))


class EfficientSamSamiDecoder(nn.Module):
    """Cross-attention decoder: mask tokens become queries, decoded tokens are merged with the visible ones back in
    the original order, and a linear head maps every token to the teacher's feature width."""

    def __init__(self, config: EfficientSamSamiConfig):
        super().__init__()
        dim = config.decoder_hidden_size
        self.decoder_embed = nn.Linear(config.vision_config.hidden_size, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Fixed, so computed in forward: a non-persistent buffer is left uninitialised by `from_pretrained`.
        self.grid_size = config.grid_size
        self.layers = nn.ModuleList(
            [EfficientSamSamiDecoderLayer(config) for _ in range(config.decoder_num_hidden_layers)]
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(dim, config.teacher_hidden_size)

    def forward(self, visible: torch.Tensor, ids_shuffle: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        batch, num_visible, _ = visible.shape
        num_tokens = ids_restore.shape[1]
        visible = self.decoder_embed(visible)
        dim = visible.shape[-1]
        position = (
            sincos_position_embedding(self.grid_size, dim).to(visible.device, visible.dtype).expand(batch, -1, -1)
        )
        shuffled_position = torch.gather(position, 1, ids_shuffle.unsqueeze(-1).expand(-1, -1, dim))
        visible = visible + shuffled_position[:, :num_visible]
        masked = self.mask_token.to(visible.dtype) + shuffled_position[:, num_visible:]
        for layer in self.layers:
            masked = layer(masked, visible)
        merged = torch.cat([visible, masked], dim=1)
        merged = torch.gather(merged, 1, ids_restore.unsqueeze(-1).expand(-1, num_tokens, dim))
        return self.head(self.norm(merged))


class EfficientSamForSamiPretraining(EfficientSamPreTrainedModel):
    """EfficientSAM's ViT pretrained with SAMI: reconstruct a frozen teacher's features from 25% of the tokens.

    Teacher targets come from either `teacher_features` passed to `forward` (precomputed full-image feature maps,
    cropped here to each sample's `crop_boxes`) or the teacher attached with [`set_teacher`], run on the same
    augmented `pixel_values` as the student. The teacher is not a submodule: it is never saved, trained, wrapped in
    DDP or switched to train mode, and it follows the student's device at the first call.
    """

    config_class = EfficientSamSamiConfig
    config: EfficientSamSamiConfig
    base_model_prefix = "sami"
    _no_split_modules = ["EfficientSamVisionLayer", "EfficientSamSamiDecoderLayer"]

    def __init__(self, config: EfficientSamSamiConfig, teacher: SamiTeacher | None = None):
        super().__init__(config)
        self.vision_encoder = EfficientSamVisionEncoder(config.vision_config)
        del self.vision_encoder.neck  # not trained by SAMI; export.py initialises it fresh
        self.decoder = EfficientSamSamiDecoder(config)
        self.__dict__["_teacher"] = None
        self.post_init()
        self.set_teacher(teacher)

    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        if isinstance(module, EfficientSamSamiDecoder):
            init.normal_(module.mask_token, std=self.config.initializer_range)

    @property
    def teacher(self) -> SamiTeacher | None:
        return self.__dict__["_teacher"]

    def set_teacher(self, teacher: SamiTeacher | None) -> None:
        """Attach (or detach with `None`) the frozen teacher used when `forward` gets no `teacher_features`."""
        if teacher is not None:
            if not isinstance(teacher, SamiTeacher):
                raise TypeError(f"teacher must be a SamiTeacher (see sami/teacher.py), got {type(teacher).__name__}.")
            if teacher.hidden_size != self.config.teacher_hidden_size:
                raise ValueError(
                    f"The teacher's feature width ({teacher.hidden_size}) must equal config.teacher_hidden_size "
                    f"({self.config.teacher_hidden_size})."
                )
        self.__dict__["_teacher"] = teacher

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        teacher_features: torch.Tensor | None = None,
        crop_boxes: torch.Tensor | None = None,
        flipped: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> EfficientSamSamiOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, 224, 224)`):
                Augmented, ImageNet-normalised images at `vision_config.pretrain_image_size`.
            noise (`torch.FloatTensor` of shape `(batch_size, num_tokens)`, *optional*):
                Masking noise (the largest values are masked); drawn with `torch.rand` when absent. The training
                script draws it per sample from a seeded generator so that resumed runs are exact.
            teacher_features (`torch.FloatTensor` of shape `(batch_size, C, H, W)`, *optional*):
                Precomputed teacher features of the whole (un-augmented) image; `crop_boxes` and `flipped` say
                which part of it each sample shows.
            crop_boxes (`torch.FloatTensor` of shape `(batch_size, 4)`, *optional*):
                `(x0, y0, x1, y1)` of each crop as fractions of the original image; defaults to the whole image.
            flipped (`torch.BoolTensor` of shape `(batch_size,)`, *optional*):
                Whether each crop was flipped horizontally; defaults to no flip.
        """
        unsupported = sorted(k for k, v in kwargs.items() if v is not None and k != "num_items_in_batch")
        if unsupported:
            raise ValueError(f"EfficientSamForSamiPretraining.forward got unsupported arguments: {unsupported}.")
        return_dict = True if return_dict is None else return_dict
        self._check_pixel_values(pixel_values)
        num_masked = self.config.num_masked_tokens
        if num_masked >= self.config.grid_size**2:
            raise ValueError(
                f"mask_ratio {self.config.mask_ratio} leaves no visible token on a {self.config.grid_size}^2 grid."
            )

        tokens, _ = self.vision_encoder.embeddings(pixel_values)
        visible, mask, ids_shuffle, ids_restore = random_masking(tokens, num_masked, noise)
        for layer in self.vision_encoder.layers:
            visible, _ = layer(visible)
        logits = self.decoder(visible, ids_shuffle, ids_restore)

        targets = self.teacher_targets(pixel_values, teacher_features, crop_boxes, flipped)
        loss = None if targets is None else self.reconstruction_loss(logits, targets)
        output = EfficientSamSamiOutput(
            loss=loss,
            logits=logits,
            mask=mask,
            ids_restore=ids_restore,
            last_hidden_state=visible,
            teacher_features=targets,
        )
        return output if return_dict else output.to_tuple()

    def teacher_targets(
        self, pixel_values, teacher_features=None, crop_boxes=None, flipped=None
    ) -> torch.Tensor | None:
        """Teacher features on the student's token grid, `(B, grid**2, teacher_hidden_size)`, or `None` when there
        is neither a precomputed map nor an attached teacher."""
        grid = self.config.grid_size
        batch = pixel_values.shape[0]
        if teacher_features is not None:
            if teacher_features.ndim != 4 or teacher_features.shape[0] != batch:
                raise ValueError(
                    f"teacher_features must have shape ({batch}, C, H, W), got {tuple(teacher_features.shape)}."
                )
            features = teacher_features
        elif self.teacher is not None:
            features = self.teacher(pixel_values)  # the teacher saw the crop itself: whole box, no flip
            crop_boxes = flipped = None
        else:
            return None
        if features.shape[1] != self.config.teacher_hidden_size:
            raise ValueError(
                f"teacher features have {features.shape[1]} channels, config.teacher_hidden_size is "
                f"{self.config.teacher_hidden_size}."
            )
        return resample_to_grid(features.float(), (grid, grid), crop_boxes, flipped).to(pixel_values.dtype)

    def reconstruction_loss(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """MSE (or mean `1 - cosine`) between predicted and teacher features over all tokens."""
        if self.config.loss_type == "cosine":
            return (1 - F.cosine_similarity(predictions.float(), targets.float(), dim=-1)).mean()
        return F.mse_loss(predictions.float(), targets.float())

    def _check_pixel_values(self, pixel_values):
        size = self.config.vision_config.pretrain_image_size
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}.")
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[2:]) != (size, size):
            raise ValueError(
                f"pixel_values must have shape (batch_size, 3, {size}, {size}) (vision_config.pretrain_image_size), "
                f"got {tuple(pixel_values.shape)}."
            )


__all__ = ["EfficientSamForSamiPretraining", "EfficientSamSamiOutput", "random_masking"]
