"""PyTorch EfficientSAM (Xiong et al., "EfficientSAM: Leveraged Masked Image Pretraining for Efficient Segment
Anything", CVPR 2024), in the shape of transformers' `modeling_sam.py`.

Reads top-down: output dataclasses, the image encoder (a plain ViT with global attention in every block plus SAM's
neck), the prompt encoder (points only; a box is two corner points), the mask decoder (SAM's two-way transformer),
then the `PreTrainedModel` classes. This file is copied into every `save_pretrained` folder for
`trust_remote_code` users, so it imports only torch, transformers and the sibling configuration file.

Numerics follow the official implementation (github.com/yformer/EfficientSAM, commit d525f62) op for op, so a
converted checkpoint reproduces its outputs to float32 rounding. What is done differently is for speed only:
- attention runs through SDPA by default (`attn_implementation="eager"` is the official materialised softmax);
- the mask decoder does not copy the image embedding once per query: the work that is the same for every query of
  an image (the first cross attentions' projections of the image tokens, the dense positional encoding) runs once;
- outside eager mode, attention between the 11 prompt tokens and the 4096 image tokens folds the projections into
  the prompt tokens, and the 2x2 transposed convolutions run as per-pixel GEMMs in token layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, logging

from .configuration_efficientsam import (
    EfficientSamConfig,
    EfficientSamMaskDecoderConfig,
    EfficientSamPromptEncoderConfig,
    EfficientSamVisionConfig,
)

logger = logging.get_logger(__name__)

# Prompt labels (the official convention). A box is two points labelled BOX_TOP_LEFT and BOX_BOTTOM_RIGHT.
PADDING_LABEL, NEGATIVE_LABEL, POSITIVE_LABEL, BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL = -1, 0, 1, 2, 3
VALID_LABELS = (PADDING_LABEL, NEGATIVE_LABEL, POSITIVE_LABEL, BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL)


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class EfficientSamVisionEncoderOutput(ModelOutput):
    """
    Output of the EfficientSAM image encoder.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, output_channels, 64, 64)`):
            The image embeddings (after the neck), what the mask decoder consumes.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The patch embeddings plus the output of every ViT block, each `(batch_size, grid, grid, hidden_size)`
            like SAM's vision hidden states.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            Softmax attention weights of every block, each `(batch_size, num_heads, grid**2, grid**2)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class EfficientSamImageSegmentationOutput(ModelOutput):
    """
    Output of [`EfficientSamModel`], shaped like transformers' `SamImageSegmentationOutput`.

    Args:
        iou_scores (`torch.FloatTensor` of shape `(batch_size, point_batch_size, num_masks)`):
            Predicted IoU of each mask (raw head output, not sorted; `num_masks` is 3 with `multimask_output=True`,
            else 1).
        pred_masks (`torch.FloatTensor` of shape `(batch_size, point_batch_size, num_masks, 256, 256)`):
            Low-resolution mask logits; `EfficientSamImageProcessor.post_process_masks` upsamples them (bicubic) to
            the original image size.
        image_embeddings (`torch.FloatTensor` of shape `(batch_size, 256, 64, 64)`):
            The image embeddings used, so a caller that passed `pixel_values` can reuse them for further prompts.
        vision_hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            See [`EfficientSamVisionEncoderOutput.hidden_states`].
        vision_attentions (`tuple(torch.FloatTensor)`, *optional*):
            See [`EfficientSamVisionEncoderOutput.attentions`].
    """

    iou_scores: torch.FloatTensor | None = None
    pred_masks: torch.FloatTensor | None = None
    image_embeddings: torch.FloatTensor | None = None
    vision_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    vision_attentions: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------
# Attention kernels
# ----------------------------------------------------------------------------------------------------------------


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
):
    """The official implementation's attention: materialised scores, softmax, matmul. Inputs `(B, H, L, D)`."""
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = attn_weights.softmax(dim=-1)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


def _attention_function(config, output_attentions: bool) -> Callable:
    """Pick the kernel named by `config._attn_implementation`; attention weights need the eager kernel."""
    implementation = getattr(config, "_attn_implementation", None) or "sdpa"
    if implementation == "eager" or output_attentions:
        return eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)


# ----------------------------------------------------------------------------------------------------------------
# Image encoder
# ----------------------------------------------------------------------------------------------------------------


class EfficientSamLayerNorm2d(nn.Module):
    """LayerNorm over the channels of a `(B, C, H, W)` map, computed exactly as the official `LayerNorm2d`."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mean = hidden_states.mean(1, keepdim=True)
        variance = (hidden_states - mean).pow(2).mean(1, keepdim=True)
        hidden_states = (hidden_states - mean) / torch.sqrt(variance + self.eps)
        return self.weight[:, None, None] * hidden_states + self.bias[:, None, None]


class EfficientSamPatchEmbeddings(nn.Module):
    """Turns `pixel_values` `(B, C, H, W)` into patch tokens `(B, H/p * W/p, hidden_size)`, row-major."""

    def __init__(self, config: EfficientSamVisionConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        _, channels, height, width = pixel_values.shape
        if channels != self.num_channels:
            raise ValueError(
                f"pixel_values must have {self.num_channels} channels, got shape {tuple(pixel_values.shape)}."
            )
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"pixel_values height and width must be multiples of the patch size {self.patch_size}, "
                f"got shape {tuple(pixel_values.shape)}."
            )
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class EfficientSamVisionEmbeddings(nn.Module):
    """Patch tokens plus the absolute position embedding.

    The position embedding is stored on the pretraining grid (14x14 for 224-pixel SAMI pretraining, plus an unused
    class-token slot, as in the official checkpoints) and resized bicubically to the grid of the input, so the same
    weights serve 224-pixel pretraining and 1024-pixel segmentation.
    """

    def __init__(self, config: EfficientSamVisionConfig):
        super().__init__()
        self.patch_embed = EfficientSamPatchEmbeddings(config)
        self.pretrain_grid_size = config.pretrain_image_size // config.patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid_size**2 + 1, config.hidden_size))

    def position_embeddings(self, height: int, width: int) -> torch.Tensor:
        """Position embedding for a `height x width` token grid, shape `(1, height * width, hidden_size)`."""
        grid = self.pretrain_grid_size
        pos_embed = self.pos_embed[:, 1:]  # drop the class-token slot
        if (height, width) == (grid, grid):
            return pos_embed
        resized = F.interpolate(
            pos_embed.reshape(1, grid, grid, -1).permute(0, 3, 1, 2),
            size=(height, width),
            mode="bicubic",
            align_corners=False,
        )
        return resized.permute(0, 2, 3, 1).reshape(1, height * width, -1)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        tokens = self.patch_embed(pixel_values)
        grid_hw = (
            pixel_values.shape[-2] // self.patch_embed.patch_size,
            pixel_values.shape[-1] // self.patch_embed.patch_size,
        )
        return tokens + self.position_embeddings(*grid_hw), grid_hw


class EfficientSamVisionAttention(nn.Module):
    """Global multi-head self-attention with a fused qkv projection (timm/official layout)."""

    def __init__(self, config: EfficientSamVisionConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False):
        batch_size, seq_len, hidden_size = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch_size, seq_len, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attention = _attention_function(self.config, output_attentions)
        attn_output, attn_weights = attention(
            self, query, key, value, attention_mask=None, scaling=self.scaling, dropout=0.0, is_causal=False
        )
        attn_output = self.proj(attn_output.reshape(batch_size, seq_len, hidden_size))
        return attn_output, (attn_weights if output_attentions else None)


class EfficientSamMLPBlock(nn.Module):
    """Two linear layers with an activation between them (SAM's `lin1`/`lin2` naming)."""

    def __init__(self, hidden_size: int, mlp_dim: int, hidden_act: str):
        super().__init__()
        self.lin1 = nn.Linear(hidden_size, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, hidden_size)
        self.act = ACT2FN[hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(hidden_states)))


class EfficientSamVisionLayer(GradientCheckpointingLayer):
    """Pre-norm ViT block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`."""

    def __init__(self, config: EfficientSamVisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = EfficientSamVisionAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = EfficientSamMLPBlock(config.hidden_size, config.mlp_dim, config.hidden_act)

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False):
        attn_output, attn_weights = self.attn(self.layer_norm1(hidden_states), output_attentions=output_attentions)
        hidden_states = hidden_states + attn_output
        hidden_states = hidden_states + self.mlp(self.layer_norm2(hidden_states))
        return hidden_states, attn_weights


class EfficientSamVisionNeck(nn.Module):
    """SAM's neck: conv1x1 -> LayerNorm2d -> conv3x3 -> LayerNorm2d, no biases."""

    def __init__(self, config: EfficientSamVisionConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(config.hidden_size, config.output_channels, kernel_size=1, bias=False)
        self.layer_norm1 = EfficientSamLayerNorm2d(config.output_channels, eps=config.layer_norm_eps)
        self.conv2 = nn.Conv2d(config.output_channels, config.output_channels, kernel_size=3, padding=1, bias=False)
        self.layer_norm2 = EfficientSamLayerNorm2d(config.output_channels, eps=config.layer_norm_eps)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.layer_norm2(self.conv2(self.layer_norm1(self.conv1(feature_map))))


# ----------------------------------------------------------------------------------------------------------------
# Prompt encoder
# ----------------------------------------------------------------------------------------------------------------


class EfficientSamPositionalEmbedding(nn.Module):
    """Random-Fourier-feature encoding of `(x, y)` in `[0, 1]` (SAM's `PositionEmbeddingRandom`)."""

    def __init__(self, config: EfficientSamPromptEncoderConfig):
        super().__init__()
        # A persistent buffer, as in the official checkpoints (it is part of their state_dict).
        self.register_buffer("positional_embedding", torch.randn(2, config.hidden_size // 2))

    def forward(self, normalized_coords: torch.Tensor) -> torch.Tensor:
        coords = 2 * normalized_coords - 1
        coords = coords.to(self.positional_embedding.dtype) @ self.positional_embedding
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)


class EfficientSamPromptEncoder(nn.Module):
    """Embeds point prompts (a box arrives as two corner points) and the dense positional encoding of the image.

    Differences from SAM's prompt encoder, kept from the official model: every point keeps its Fourier encoding
    (padding points are encoded at (-0.5, -0.5) and get the padding embedding added, not replaced), negative points
    (label 0) get no learned embedding, there is no "not a point" token appended and no mask prompt.
    """

    def __init__(self, config: EfficientSamPromptEncoderConfig):
        super().__init__()
        self.config = config
        self.shared_embedding = EfficientSamPositionalEmbedding(config)
        self.padding_point_embed = nn.Embedding(1, config.hidden_size)
        self.positive_point_embed = nn.Embedding(1, config.hidden_size)
        self.box_top_left_embed = nn.Embedding(1, config.hidden_size)
        self.box_bottom_right_embed = nn.Embedding(1, config.hidden_size)
        self._dense_pe_cache: tuple[tuple, torch.Tensor] | None = None

    def get_dense_positional_embeddings(self) -> torch.Tensor:
        """Encoding of every image-embedding cell centre, `(1, hidden_size, size, size)`; cached until the
        Fourier matrix changes (in place, device or dtype)."""
        matrix = self.shared_embedding.positional_embedding
        # Inference tensors (a model built under torch.inference_mode) have no version counter: never cached.
        version = None if matrix.is_inference() else matrix._version
        key = (matrix.data_ptr(), version, matrix.device, matrix.dtype, torch.is_inference_mode_enabled())
        if version is not None and self._dense_pe_cache is not None and self._dense_pe_cache[0] == key:
            return self._dense_pe_cache[1]
        size = self.config.image_embedding_size
        grid = torch.ones((size, size), device=matrix.device, dtype=torch.float32)
        y_embed = (grid.cumsum(dim=0) - 0.5) / size
        x_embed = (grid.cumsum(dim=1) - 0.5) / size
        dense = self.shared_embedding(torch.stack([x_embed, y_embed], dim=-1)).permute(2, 0, 1).unsqueeze(0)
        if version is not None and (not torch.is_grad_enabled() or not matrix.requires_grad):
            self._dense_pe_cache = (key, dense)
        return dense

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`points` `(..., N, 2)` in the model frame with negative coordinates meaning padding; `labels` `(..., N)`.
        Returns `(..., N, hidden_size)`."""
        points = points + 0.5  # centre of the pixel
        size = self.config.image_size
        normalized = torch.stack([points[..., 0] / size, points[..., 1] / size], dim=-1)
        embeddings = self.shared_embedding(normalized)
        # One row per label, in label order -1, 0, 1, 2, 3; negative points add an exact zero.
        label_table = torch.cat(
            [
                self.padding_point_embed.weight,
                torch.zeros_like(self.positive_point_embed.weight),
                self.positive_point_embed.weight,
                self.box_top_left_embed.weight,
                self.box_bottom_right_embed.weight,
            ]
        ).to(embeddings.dtype)
        return embeddings + label_table[labels.long() + 1]


# ----------------------------------------------------------------------------------------------------------------
# Mask decoder
# ----------------------------------------------------------------------------------------------------------------


class EfficientSamAttention(nn.Module):
    """SAM's decoder attention (projections to `hidden_size // downsample_rate`), on `(B, Q, L, C)` inputs.

    The second axis is the prompt query. A side whose second axis is 1 is shared by all queries of its image and is
    never copied: shared keys are attended by all queries' tokens at once (folded into one sequence), a shared
    query side is projected once and broadcast.
    """

    def __init__(self, config: EfficientSamMaskDecoderConfig, downsample_rate: int = 1):
        super().__init__()
        self.config = config
        self.internal_dim = config.hidden_size // downsample_rate
        self.num_heads = config.num_attention_heads
        if self.internal_dim % self.num_heads != 0:
            raise ValueError(
                f"num_attention_heads ({self.num_heads}) must divide the internal width {self.internal_dim}."
            )
        self.head_dim = self.internal_dim // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(config.hidden_size, self.internal_dim)
        self.k_proj = nn.Linear(config.hidden_size, self.internal_dim)
        self.v_proj = nn.Linear(config.hidden_size, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, config.hidden_size)

    def _split_heads(self, states: torch.Tensor) -> torch.Tensor:
        batch, queries, length, _ = states.shape
        return states.reshape(batch * queries, length, self.num_heads, self.head_dim).transpose(1, 2)

    # Below this many tokens on one side (the prompt tokens are 11), attention against the 4096 image tokens is
    # computed with the projections folded into the few tokens (`_forward_few_keys` / `_forward_few_queries`).
    few_tokens = 64

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        if getattr(self.config, "_attn_implementation", None) != "eager":
            query_len, key_len = query.shape[2], key.shape[2]
            if key_len <= self.few_tokens < query_len:
                return self._forward_few_keys(query, key, value)
            if query_len <= self.few_tokens < key_len and key.shape[1] == query.shape[1]:
                return self._forward_few_queries(query, key, value)
        return self._forward_projected(query, key, value)

    def _head_weights(self, linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """An input projection's weight as `(heads, head_dim, hidden)` and bias as `(heads, head_dim)`."""
        return (
            linear.weight.reshape(self.num_heads, self.head_dim, -1),
            linear.bias.reshape(self.num_heads, self.head_dim),
        )

    def _forward_few_keys(self, query, key, value):
        """Many queries (image tokens) attend few keys (prompt tokens), for every prompt group.

        The query projection is folded into the keys, `(x Wq + bq) k^T = x (Wq k^T) + bq k^T`, and the output
        projection into the values, `sum_h P_h (v_h Wo_h)`: two GEMMs against the image tokens with
        `heads * num_keys` (88) columns, instead of a 128-wide projection, a 16-wide-head attention kernel (slow on
        CPU for 11 keys) and another projection. The same function up to float32 rounding.
        """
        batch, query_groups, query_len, hidden = query.shape
        groups, key_len = key.shape[1], key.shape[2]
        keys = self._split_heads(self.k_proj(key)).reshape(batch, groups, self.num_heads, key_len, self.head_dim)
        values = self._split_heads(self.v_proj(value)).reshape(batch, groups, self.num_heads, key_len, self.head_dim)
        q_weight, q_bias = self._head_weights(self.q_proj)
        heads_keys = self.num_heads * key_len
        folded_query = torch.einsum("bghld,hdc->bghlc", keys, q_weight).mul(self.scaling)
        folded_query = folded_query.reshape(batch, groups, heads_keys, hidden)
        score_bias = torch.einsum("bghld,hd->bghl", keys, q_bias).mul(self.scaling).unsqueeze(-1)
        # Scores are laid out (keys, image tokens) so that the softmax over the 11 keys runs along a strided axis,
        # vectorised over the 4096 image tokens (a softmax along a contiguous axis of 11 is slow on CPU).
        if query_groups == 1:  # shared image tokens: one GEMM for all groups, no copy of the image tokens
            scores = torch.matmul(
                folded_query.reshape(batch, groups * heads_keys, hidden), query[:, 0].transpose(1, 2)
            )
        else:
            scores = torch.matmul(folded_query, query.transpose(-1, -2))
        scores = scores.reshape(batch, groups, self.num_heads, key_len, query_len) + score_bias
        probabilities = scores.softmax(dim=-2).reshape(batch, groups, heads_keys, query_len)
        out_weight = self.out_proj.weight.reshape(hidden, self.num_heads, self.head_dim)
        folded_value = torch.einsum("bghld,chd->bghlc", values, out_weight).reshape(batch, groups, heads_keys, hidden)
        output = torch.matmul(probabilities.transpose(-1, -2), folded_value)
        return output + self.out_proj.bias

    def _forward_few_queries(self, query, key, value):
        """Few queries (prompt tokens) attend many keys (each group's own image tokens).

        The key projection is folded into the queries, `q_h (x Wk_h + bk_h)^T = (q_h Wk_h) x^T + const` (a constant
        per row, which the softmax ignores), and the value projection is applied after the weighted sum,
        `P (x Wv + bv) = (P x) Wv + bv` (rows of P sum to 1): two GEMMs with `heads * num_queries` rows instead of two
        128-wide projections of the image tokens. The same function up to float32 rounding.
        """
        batch, groups, query_len, hidden = query.shape
        queries = self._split_heads(self.q_proj(query)).reshape(
            batch, groups, self.num_heads, query_len, self.head_dim
        )
        k_weight, _ = self._head_weights(self.k_proj)
        folded_key = torch.einsum("bghld,hdc->bghlc", queries, k_weight).mul(self.scaling)
        heads_queries = self.num_heads * query_len
        scores = torch.matmul(folded_key.reshape(batch, groups, heads_queries, hidden), key.transpose(-1, -2))
        weighted = torch.matmul(scores.softmax(dim=-1), value)  # (B, G, heads * queries, hidden)
        v_weight, v_bias = self._head_weights(self.v_proj)
        weighted = weighted.reshape(batch, groups, self.num_heads, query_len, hidden)
        heads_out = torch.einsum("bghlc,hdc->bglhd", weighted, v_weight) + v_bias.reshape(1, 1, 1, self.num_heads, -1)
        return self.out_proj(heads_out.reshape(batch, groups, query_len, self.internal_dim))

    def _forward_projected(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Project, split heads, attend (SDPA or the official eager kernel), merge, project: the reference path."""
        query, key, value = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        batch, query_groups, query_len, _ = query.shape
        key_groups = key.shape[1]
        folded = key_groups == 1 and query_groups > 1
        if folded:  # every query's tokens attend the same (shared) image tokens: one sequence per image
            query = query.reshape(batch, 1, query_groups * query_len, self.internal_dim)
        elif query_groups == 1 and key_groups > 1:  # shared image tokens attend each query's tokens
            query = query.expand(batch, key_groups, query_len, self.internal_dim)
        attention = _attention_function(self.config, output_attentions=False)
        attn_output, _ = attention(
            self,
            self._split_heads(query),
            self._split_heads(key),
            self._split_heads(value),
            attention_mask=None,
            scaling=self.scaling,
            dropout=0.0,
            is_causal=False,
        )
        groups = max(query_groups, key_groups)
        attn_output = attn_output.reshape(batch, groups, query_len, self.internal_dim)
        return self.out_proj(attn_output)


class EfficientSamFeedForward(nn.Module):
    """MLP of `num_layers` linear layers with the activation after every layer but the last (`proj_in`, `layers`,
    `proj_out`, as SAM names them)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, hidden_act: str):
        super().__init__()
        self.proj_in = nn.Linear(input_dim, hidden_dim)
        self.layers = nn.ModuleList([nn.Linear(hidden_dim, hidden_dim) for _ in range(num_layers - 2)])
        self.proj_out = nn.Linear(hidden_dim, output_dim)
        self.act = ACT2FN[hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.act(self.proj_in(hidden_states))
        for layer in self.layers:
            hidden_states = self.act(layer(hidden_states))
        return self.proj_out(hidden_states)


class EfficientSamTwoWayAttentionBlock(GradientCheckpointingLayer):
    """SAM's two-way block: token self-attention, tokens -> image, token MLP, image -> tokens."""

    def __init__(self, config: EfficientSamMaskDecoderConfig, skip_first_layer_pe: bool = False):
        super().__init__()
        self.self_attn = EfficientSamAttention(config, downsample_rate=1)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cross_attn_token_to_image = EfficientSamAttention(config, config.attention_downsample_rate)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = EfficientSamMLPBlock(config.hidden_size, config.mlp_dim, config.hidden_act)
        self.layer_norm3 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layer_norm4 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cross_attn_image_to_token = EfficientSamAttention(config, config.attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_point_embedding, key_point_embedding):
        # EfficientSAM differs from SAM here: the residual is always kept, and outside the first block the
        # positional embedding is added to the tokens themselves (values and residual included).
        if not self.skip_first_layer_pe:
            queries = queries + query_point_embedding
        queries = self.layer_norm1(queries + self.self_attn(queries, queries, queries))

        query = queries + query_point_embedding
        key = keys + key_point_embedding  # shared by both cross attentions (keys do not change in between)
        queries = self.layer_norm2(queries + self.cross_attn_token_to_image(query, key, keys))

        queries = self.layer_norm3(queries + self.mlp(queries))

        query = queries + query_point_embedding
        keys = self.layer_norm4(keys + self.cross_attn_image_to_token(key, query, queries))
        return queries, keys


class EfficientSamTwoWayTransformer(nn.Module):
    def __init__(self, config: EfficientSamMaskDecoderConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                EfficientSamTwoWayAttentionBlock(config, skip_first_layer_pe=(i == 0))
                for i in range(config.num_hidden_layers)
            ]
        )
        self.final_attn_token_to_image = EfficientSamAttention(config, config.attention_downsample_rate)
        self.layer_norm_final_attn = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, point_embeddings, image_embeddings, image_positional_embeddings):
        """`point_embeddings` `(B, Q, T, C)`; `image_embeddings` and `image_positional_embeddings` `(B or 1, 1, HW, C)`
        (shared by the queries). Returns tokens `(B, Q, T, C)` and image tokens `(B, Q, HW, C)`."""
        queries, keys = point_embeddings, image_embeddings
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embeddings, image_positional_embeddings)
        attn_output = self.final_attn_token_to_image(
            queries + point_embeddings, keys + image_positional_embeddings, keys
        )
        return self.layer_norm_final_attn(queries + attn_output), keys


class EfficientSamMaskDecoder(nn.Module):
    """Predicts mask logits and IoU from image embeddings and prompt tokens (SAM's decoder, GELU, no dense prompt).

    Output tokens are `[iou, mask_0 (single-mask), mask_1..mask_3 (multimask)]`; the masks of the tokens that are not
    returned are not computed.
    """

    def __init__(self, config: EfficientSamMaskDecoderConfig):
        super().__init__()
        self.config = config
        self.num_multimask_outputs = config.num_multimask_outputs
        self.num_mask_tokens = config.num_multimask_outputs + 1
        hidden = config.hidden_size
        self.iou_token = nn.Embedding(1, hidden)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, hidden)
        self.transformer = EfficientSamTwoWayTransformer(config)

        dims = [hidden, *config.upscaling_dims]
        self.upscale_convs = nn.ModuleList(
            [nn.ConvTranspose2d(dims[i], dims[i + 1], kernel_size=2, stride=2) for i in range(len(dims) - 1)]
        )
        # GroupNorm(1, C) after every upscaling but the last, as the official decoder (not SAM's LayerNorm2d).
        self.upscale_norms = nn.ModuleList(
            [nn.GroupNorm(1, dim, eps=config.layer_norm_eps) for dim in config.upscaling_dims[:-1]]
        )
        self.act = ACT2FN[config.hidden_act]
        self.output_hypernetworks_mlps = nn.ModuleList(
            [
                EfficientSamFeedForward(hidden, hidden, dims[-1], num_layers=3, hidden_act=config.hidden_act)
                for _ in range(self.num_mask_tokens)
            ]
        )
        self.iou_prediction_head = EfficientSamFeedForward(
            hidden, config.iou_head_hidden_dim, self.num_mask_tokens, config.iou_head_depth, config.hidden_act
        )

    def upscale(self, image_tokens: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Upscaled features in pixel-major layout: `(N, HW, C)` tokens -> `(N, HW * 4**k, C_last)` for k
        kernel-2 stride-2 transposed convolutions, and the number k.

        A kernel-2 stride-2 transposed convolution writes one 2x2 block per input pixel, so it is a per-pixel linear
        map; its output is kept in blocked pixel order `(h, w, a, b, ...)` instead of being shuffled into an image
        after every stage. Only the final 3 masks are shuffled (`_unblock_masks`), not the 32-channel features.
        GroupNorm(1, C) statistics do not depend on the pixel order. Equal to the official convolutions to float32
        rounding, and about twice as fast on CPU.
        """
        features = image_tokens
        for index, conv in enumerate(self.upscale_convs):
            batch, pixels, in_channels = features.shape
            out_channels = conv.out_channels
            # weight (in, out, 2, 2) -> rows ordered (a, b, out) so that each sub-pixel's channels are contiguous
            weight = conv.weight.permute(0, 2, 3, 1).reshape(in_channels, 4 * out_channels)
            bias = conv.bias.repeat(4) if conv.bias is not None else None
            features = F.linear(features, weight.t(), bias).reshape(batch, pixels * 4, out_channels)
            if index < len(self.upscale_norms):
                features = _single_group_norm_channels_last(features, self.upscale_norms[index])
            features = self.act(features)
        return features, len(self.upscale_convs)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_positional_embeddings: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`image_embeddings` `(B, C, H, W)`, `image_positional_embeddings` `(1, C, H, W)`, `sparse_prompt_embeddings`
        `(B, Q, N, C)`. Returns masks `(B, Q, M, 4H, 4W)` and IoU `(B, Q, M)`."""
        batch, queries, _, hidden = sparse_prompt_embeddings.shape
        _, _, height, width = image_embeddings.shape
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.to(sparse_prompt_embeddings.dtype).expand(batch, queries, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=2)

        image_tokens = image_embeddings.flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C)
        image_pe = image_positional_embeddings.flatten(2).transpose(1, 2).unsqueeze(1).to(image_tokens.dtype)
        tokens_out, image_tokens_out = self.transformer(tokens, image_tokens, image_pe)

        if multimask_output and self.num_multimask_outputs > 1:
            token_range = range(1, self.num_mask_tokens)
        else:
            token_range = range(0, 1)
        upscaled, stages = self.upscale(image_tokens_out.reshape(batch * queries, height * width, hidden))
        hyper_in = torch.stack(
            [self.output_hypernetworks_mlps[i](tokens_out[:, :, 1 + i]) for i in token_range], dim=2
        ).reshape(batch * queries, len(token_range), -1)
        blocked_masks = torch.bmm(upscaled, hyper_in.transpose(1, 2))  # (N, pixels, M), blocked pixel order
        masks = _unblock_masks(blocked_masks, height, width, stages)
        masks = masks.reshape(batch, queries, len(token_range), *masks.shape[-2:])
        iou_pred = self.iou_prediction_head(tokens_out[:, :, 0])[..., token_range.start : token_range.stop]
        return masks, iou_pred


def _single_group_norm_channels_last(features: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """`GroupNorm(1, C)` of `(N, pixels, C)` features: statistics over all of a sample, affine per channel. The means
    are taken one axis at a time (equal-sized rows make the mean of means the mean), which keeps float32 sums short
    in every runtime (onnxruntime's single long sum drifted by ~1e-4)."""
    mean = features.mean(-1, keepdim=True).mean(-2, keepdim=True)
    centered = features - mean
    variance = centered.pow(2).mean(-1, keepdim=True).mean(-2, keepdim=True)
    return centered / torch.sqrt(variance + norm.eps) * norm.weight + norm.bias


def _unblock_masks(blocked: torch.Tensor, height: int, width: int, stages: int) -> torch.Tensor:
    """`(N, pixels, M)` in blocked order `(h, w, a1, b1, a2, b2, ...)` -> `(N, M, H * 2**k, W * 2**k)` images,
    where row = `h * 2**k + a1 * 2**(k-1) + ...` (and likewise columns)."""
    batch, _, channels = blocked.shape
    grid = blocked.reshape(batch, height, width, *([2, 2] * stages), channels)
    rows = [1] + [3 + 2 * i for i in range(stages)]
    cols = [2] + [4 + 2 * i for i in range(stages)]
    grid = grid.permute(0, grid.ndim - 1, *rows, *cols)
    return grid.reshape(batch, channels, height * 2**stages, width * 2**stages)


# ----------------------------------------------------------------------------------------------------------------
# Pretrained models
# ----------------------------------------------------------------------------------------------------------------


class EfficientSamPreTrainedModel(PreTrainedModel):
    config_class = EfficientSamConfig
    config: EfficientSamConfig
    base_model_prefix = "efficientsam"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["EfficientSamVisionLayer", "EfficientSamTwoWayAttentionBlock"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    def _init_weights(self, module: nn.Module):
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm, EfficientSamLayerNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=std)
        elif isinstance(module, EfficientSamVisionEmbeddings):
            init.trunc_normal_(module.pos_embed, std=std)
        elif isinstance(module, EfficientSamPositionalEmbedding):
            init.normal_(module.positional_embedding, std=1.0)


class EfficientSamVisionEncoder(EfficientSamPreTrainedModel):
    """The EfficientSAM image encoder: embeddings, `num_hidden_layers` ViT blocks, neck."""

    config_class = EfficientSamVisionConfig
    config: EfficientSamVisionConfig

    def __init__(self, config: EfficientSamVisionConfig):
        super().__init__(config)
        self.embeddings = EfficientSamVisionEmbeddings(config)
        self.layers = nn.ModuleList([EfficientSamVisionLayer(config) for _ in range(config.num_hidden_layers)])
        self.neck = EfficientSamVisionNeck(config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embed

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> EfficientSamVisionEncoderOutput | tuple:
        output_attentions = _resolve(output_attentions, self.config, "output_attentions")
        output_hidden_states = _resolve(output_hidden_states, self.config, "output_hidden_states")
        return_dict = _resolve(return_dict, self.config, "return_dict", default=True)
        _check_tensor("pixel_values", pixel_values, ndim=4, floating=True)

        hidden_states, (grid_h, grid_w) = self.embeddings(pixel_values)
        all_hidden_states = [] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        for layer in self.layers:
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            hidden_states, attn_weights = layer(hidden_states, output_attentions)
            if output_attentions:
                all_attentions.append(attn_weights)
        if output_hidden_states:
            all_hidden_states.append(hidden_states)
        batch = hidden_states.shape[0]
        feature_map = hidden_states.reshape(batch, grid_h, grid_w, -1).permute(0, 3, 1, 2)
        image_embeddings = self.neck(feature_map)

        output = EfficientSamVisionEncoderOutput(
            last_hidden_state=image_embeddings,
            hidden_states=(
                tuple(h.reshape(batch, grid_h, grid_w, -1) for h in all_hidden_states)
                if output_hidden_states
                else None
            ),
            attentions=tuple(all_attentions) if output_attentions else None,
        )
        return output if return_dict else output.to_tuple()


class EfficientSamVisionModel(EfficientSamPreTrainedModel):
    """The EfficientSAM image encoder alone (like `SamVisionModel`); its weights load 1:1 into `EfficientSamModel`."""

    config_class = EfficientSamVisionConfig
    config: EfficientSamVisionConfig

    def __init__(self, config: EfficientSamVisionConfig):
        super().__init__(config)
        self.vision_encoder = EfficientSamVisionEncoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.vision_encoder.get_input_embeddings()

    def forward(self, pixel_values: torch.Tensor | None = None, **kwargs) -> EfficientSamVisionEncoderOutput | tuple:
        return self.vision_encoder(pixel_values, **kwargs)


class EfficientSamModel(EfficientSamPreTrainedModel):
    """EfficientSAM: predicts masks for an image and point/box prompts, with `SamModel`'s interface.

    Where EfficientSAM differs from SAM:
      - prompts: points and boxes only (no mask prompt; `input_masks` raises). A box `(x0, y0, x1, y1)` becomes two
        points labelled 2 (top-left) and 3 (bottom-right), placed before the query's points. Every query is padded
        with label -1 to, or truncated to, `prompt_encoder_config.max_num_points` (6) points, as the official
        model does; truncation logs a warning.
      - labels: 1 positive, 0 negative, -1 padding, and 2/3 box corners (the official convention). A point with a
        negative coordinate is a padding point.
      - coordinates: all prompts are in the 1024x1024 model frame (the processor rescales each axis; images are
        stretched, not padded).
    """

    def __init__(self, config: EfficientSamConfig):
        super().__init__(config)
        self.vision_encoder = EfficientSamVisionEncoder(config.vision_config)
        self.prompt_encoder = EfficientSamPromptEncoder(config.prompt_encoder_config)
        self.mask_decoder = EfficientSamMaskDecoder(config.mask_decoder_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.vision_encoder.get_input_embeddings()

    def get_image_wide_positional_embeddings(self) -> torch.Tensor:
        """Dense positional encoding of the image-embedding grid, `(1, 256, 64, 64)` (cached)."""
        return self.prompt_encoder.get_dense_positional_embeddings()

    @torch.no_grad()
    def get_image_embeddings(self, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        """Image embeddings `(B, 256, 64, 64)` for `pixel_values` `(B, 3, 1024, 1024)` from the image processor."""
        self._check_pixel_values(pixel_values)
        return self.vision_encoder(pixel_values, return_dict=True, **kwargs).last_hidden_state

    @torch.no_grad()
    def get_prompt_embeddings(
        self,
        input_points: torch.Tensor | None = None,
        input_labels: torch.Tensor | None = None,
        input_boxes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sparse prompt embeddings `(B, Q, max_num_points, 256)` as the decoder sees them."""
        points, labels = self._prompts_to_points(input_points, input_labels, input_boxes, batch_size=None)
        return self.prompt_encoder(points, labels)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_points: torch.Tensor | None = None,
        input_labels: torch.Tensor | None = None,
        input_boxes: torch.Tensor | None = None,
        image_embeddings: torch.Tensor | None = None,
        multimask_output: bool = True,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        input_masks: torch.Tensor | None = None,
        original_sizes: torch.Tensor | None = None,
        reshaped_input_sizes: torch.Tensor | None = None,
        **kwargs,
    ) -> EfficientSamImageSegmentationOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, 1024, 1024)`):
                Images from [`EfficientSamImageProcessor`]. Give this or `image_embeddings`, not both.
            input_points (`torch.FloatTensor` of shape `(batch_size, point_batch_size, num_points, 2)`):
                `(x, y)` in the 1024x1024 model frame; negative coordinates mark padding points.
            input_labels (`torch.LongTensor` of shape `(batch_size, point_batch_size, num_points)`):
                1 positive, 0 negative, -1 padding, 2/3 box top-left/bottom-right. Defaults to 1 for every point
                (-1 where a coordinate is negative).
            input_boxes (`torch.FloatTensor` of shape `(batch_size, point_batch_size, 4)`):
                `(x0, y0, x1, y1)` in the model frame; each becomes two corner points labelled 2 and 3. A box of
                negative coordinates (the processor pads ragged batches with `(-1, -1, -1, -1)`) is padding.
            image_embeddings (`torch.FloatTensor` of shape `(batch_size, 256, 64, 64)`):
                Precomputed `get_image_embeddings` output, to prompt one image many times cheaply.
            multimask_output (`bool`, defaults to `True`):
                Return the 3 multimask outputs (else the single-mask token's output).
            output_attentions / output_hidden_states / return_dict:
                As in transformers; they concern the image encoder.
            input_masks:
                Not supported: EfficientSAM has no mask prompt. Passing it raises `ValueError`.
            original_sizes / reshaped_input_sizes:
                Accepted and unused, so that `model(**processor(...))` works as with `SamModel`; they matter only to
                `post_process_masks`.
        """
        if input_masks is not None:
            raise ValueError("input_masks is not supported: EfficientSAM has no mask prompt (use points or boxes).")
        unsupported = sorted(k for k, v in kwargs.items() if v is not None)
        if unsupported:
            raise ValueError(f"EfficientSamModel.forward got unsupported arguments: {unsupported}.")
        return_dict = _resolve(return_dict, self.config, "return_dict", default=True)
        if (pixel_values is None) == (image_embeddings is None):
            raise ValueError("Give exactly one of pixel_values or image_embeddings.")

        vision_hidden_states = vision_attentions = None
        if pixel_values is not None:
            self._check_pixel_values(pixel_values)
            vision_outputs = self.vision_encoder(
                pixel_values,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
            image_embeddings = vision_outputs.last_hidden_state
            vision_hidden_states, vision_attentions = vision_outputs.hidden_states, vision_outputs.attentions
        else:
            self._check_image_embeddings(image_embeddings)

        points, labels = self._prompts_to_points(input_points, input_labels, input_boxes, image_embeddings.shape[0])
        sparse_embeddings = self.prompt_encoder(points, labels).to(image_embeddings.dtype)
        low_res_masks, iou_predictions = self.mask_decoder(
            image_embeddings=image_embeddings,
            image_positional_embeddings=self.get_image_wide_positional_embeddings(),
            sparse_prompt_embeddings=sparse_embeddings,
            multimask_output=multimask_output,
        )
        output = EfficientSamImageSegmentationOutput(
            iou_scores=iou_predictions,
            pred_masks=low_res_masks,
            image_embeddings=image_embeddings,
            vision_hidden_states=vision_hidden_states,
            vision_attentions=vision_attentions,
        )
        return output if return_dict else output.to_tuple()

    # -- input handling ------------------------------------------------------------------------------------------

    def _check_pixel_values(self, pixel_values):
        size = self.config.vision_config.image_size
        channels = self.config.vision_config.num_channels
        _check_tensor("pixel_values", pixel_values, ndim=4, floating=True)
        if tuple(pixel_values.shape[1:]) != (channels, size, size):
            raise ValueError(
                f"pixel_values must have shape (batch_size, {channels}, {size}, {size}) as produced by "
                f"EfficientSamImageProcessor, got {tuple(pixel_values.shape)}."
            )

    def _check_image_embeddings(self, image_embeddings):
        channels = self.config.vision_config.output_channels
        grid = self.config.vision_config.grid_size
        _check_tensor("image_embeddings", image_embeddings, ndim=4, floating=True)
        if tuple(image_embeddings.shape[1:]) != (channels, grid, grid):
            raise ValueError(
                f"image_embeddings must have shape (batch_size, {channels}, {grid}, {grid}), "
                f"got {tuple(image_embeddings.shape)}."
            )

    def _prompts_to_points(self, input_points, input_labels, input_boxes, batch_size):
        """Validate prompts and turn them into `(B, Q, max_num_points, 2)` points and labels in the model frame."""
        if input_points is None and input_boxes is None:
            if input_labels is not None:
                raise ValueError("input_labels was given without input_points.")
            raise ValueError("At least one prompt is needed: pass input_points and/or input_boxes.")
        size = self.config.prompt_encoder_config.image_size
        parts_points, parts_labels = [], []
        shape_bq = None
        if input_boxes is not None:
            _check_tensor("input_boxes", input_boxes, ndim=3, floating=True, last_dim=4)
            _check_coordinates("input_boxes", input_boxes, size)
            if ((input_boxes[..., 2] < input_boxes[..., 0]) | (input_boxes[..., 3] < input_boxes[..., 1])).any():
                raise ValueError("input_boxes must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0.")
            shape_bq = tuple(input_boxes.shape[:2])
            parts_points.append(input_boxes.reshape(*shape_bq, 2, 2))
            corner_labels = torch.tensor([BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL], device=input_boxes.device)
            # A box of negative coordinates (the processor's (-1, -1, -1, -1) for ragged batches) is padding.
            is_padding = (input_boxes < 0).all(-1, keepdim=True)
            parts_labels.append(torch.where(is_padding, PADDING_LABEL, corner_labels.expand(*shape_bq, 2)))
        if input_points is not None:
            _check_tensor("input_points", input_points, ndim=4, floating=True, last_dim=2)
            _check_coordinates("input_points", input_points, size)
            if input_labels is None:
                input_labels = torch.where((input_points < 0).any(-1), PADDING_LABEL, POSITIVE_LABEL).to(
                    device=input_points.device, dtype=torch.long
                )
            _check_tensor("input_labels", input_labels, ndim=3)
            if input_labels.is_floating_point() or input_labels.is_complex() or input_labels.dtype == torch.bool:
                raise TypeError(f"input_labels must be an integer tensor, got dtype {input_labels.dtype}.")
            if tuple(input_labels.shape) != tuple(input_points.shape[:3]):
                raise ValueError(
                    f"input_labels must have shape {tuple(input_points.shape[:3])} (batch_size, point_batch_size, "
                    f"num_points) to match input_points, got {tuple(input_labels.shape)}."
                )
            bad = ~torch.isin(input_labels, torch.tensor(VALID_LABELS, device=input_labels.device))
            if bad.any():
                raise ValueError(
                    f"input_labels must be in {VALID_LABELS} (padding, negative, positive, box top-left, box "
                    f"bottom-right), got {sorted(set(input_labels[bad].tolist()))}."
                )
            if shape_bq is not None and tuple(input_points.shape[:2]) != shape_bq:
                raise ValueError(
                    "input_points and input_boxes must have the same (batch_size, point_batch_size), got "
                    f"{tuple(input_points.shape[:2])} and {shape_bq}."
                )
            shape_bq = tuple(input_points.shape[:2])
            parts_points.append(input_points)
            parts_labels.append(input_labels.long())
        if 0 in shape_bq or any(p.shape[2] == 0 for p in parts_points):
            raise ValueError(f"Prompts must not be empty, got (batch_size, point_batch_size) = {shape_bq}.")
        if batch_size is not None and shape_bq[0] != batch_size:
            raise ValueError(
                f"The prompts' batch size ({shape_bq[0]}) must equal the number of images ({batch_size})."
            )

        points = torch.cat([p.to(torch.float32) for p in parts_points], dim=2)
        labels = torch.cat(parts_labels, dim=2)
        points = torch.where(points >= 0, points, torch.full_like(points, -1.0))  # official: negative -> padding
        max_points = self.config.prompt_encoder_config.max_num_points
        num_points = points.shape[2]
        if num_points > max_points:
            logger.warning_once(
                f"EfficientSAM uses at most {max_points} points per query (a box counts as 2); got {num_points}, "
                "the extra ones are dropped as in the official model."
            )
            points, labels = points[:, :, :max_points], labels[:, :, :max_points]
        elif num_points < max_points:
            points = F.pad(points, (0, 0, 0, max_points - num_points), value=-1.0)
            labels = F.pad(labels, (0, max_points - num_points), value=PADDING_LABEL)
        return points, labels


# ----------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------


def _resolve(value, config, name, default=False):
    if value is not None:
        return value
    return getattr(config, name, default)


def _check_tensor(name, value, ndim, floating=False, last_dim=None):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}.")
    if value.ndim != ndim or (last_dim is not None and value.shape[-1] != last_dim):
        expected = {
            "pixel_values": "(batch_size, 3, height, width)",
            "image_embeddings": "(batch_size, 256, 64, 64)",
            "input_points": "(batch_size, point_batch_size, num_points, 2)",
            "input_labels": "(batch_size, point_batch_size, num_points)",
            "input_boxes": "(batch_size, point_batch_size, 4)",
        }.get(name, f"{ndim} dimensions")
        raise ValueError(f"{name} must have shape {expected}, got {tuple(value.shape)}.")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}.")


def _check_coordinates(name, value, size):
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates.")
    if (value > size).any():
        raise ValueError(
            f"{name} has coordinates above {size}: prompts must be in the {size}x{size} model frame "
            "(use EfficientSamProcessor to rescale original-image pixels)."
        )


__all__ = [
    "EfficientSamImageSegmentationOutput",
    "EfficientSamModel",
    "EfficientSamPreTrainedModel",
    "EfficientSamVisionEncoder",
    "EfficientSamVisionEncoderOutput",
    "EfficientSamVisionModel",
]
