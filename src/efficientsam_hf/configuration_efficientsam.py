"""EfficientSAM configuration: vision, prompt-encoder and mask-decoder sub-configs composed in `EfficientSamConfig`.

This file is copied into every `save_pretrained` folder for `trust_remote_code` users, so it imports only
transformers. Defaults reproduce the official EfficientSAM-Ti builder (`build_efficient_sam_vitt`); use
`EfficientSamConfig.efficientsam_ti()` / `.efficientsam_s()` for the two released sizes.
"""

from __future__ import annotations

from transformers import PretrainedConfig


class EfficientSamVisionConfig(PretrainedConfig):
    r"""
    Configuration of the EfficientSAM image encoder: a plain ViT (global attention in every block, no relative
    position bias, no windows) followed by SAM's convolutional neck.

    Args:
        hidden_size (`int`, *optional*, defaults to 192):
            Width of the ViT (192 for EfficientSAM-Ti, 384 for EfficientSAM-S).
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of transformer blocks.
        num_attention_heads (`int`, *optional*, defaults to 3):
            Attention heads per block (3 for Ti, 6 for S).
        mlp_ratio (`float`, *optional*, defaults to 4.0):
            Ratio of the MLP hidden width to `hidden_size`.
        num_channels (`int`, *optional*, defaults to 3):
            Number of input channels.
        image_size (`int`, *optional*, defaults to 1024):
            Side of the square model input; images are stretched to it by the image processor.
        patch_size (`int`, *optional*, defaults to 16):
            Side of the square patches.
        pretrain_image_size (`int`, *optional*, defaults to 224):
            Image size of the masked pretraining (SAMI). The absolute position embedding is stored on its
            `(pretrain_image_size // patch_size)**2` grid plus one class-token slot, and resized bicubically to the
            `image_size // patch_size` grid at run time, as the official encoder does.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Whether the fused query/key/value projection has a bias.
        output_channels (`int`, *optional*, defaults to 256):
            Channels of the neck (conv1x1 -> LayerNorm2d -> conv3x3 -> LayerNorm2d), i.e. of the image embeddings.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the ViT MLPs.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the block LayerNorms and the neck's LayerNorm2d.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated-normal initialiser of linear layers and the position embedding.
    """

    model_type = "efficientsam_vision_model"
    base_config_key = "vision_config"

    def __init__(
        self,
        hidden_size: int = 192,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 3,
        mlp_ratio: float = 4.0,
        num_channels: int = 3,
        image_size: int = 1024,
        patch_size: int = 16,
        pretrain_image_size: int = 224,
        qkv_bias: bool = True,
        output_channels: int = 256,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if hidden_size % num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})."
            )
        if image_size % patch_size != 0 or pretrain_image_size % patch_size != 0:
            raise ValueError(
                f"image_size ({image_size}) and pretrain_image_size ({pretrain_image_size}) must be multiples of "
                f"patch_size ({patch_size})."
            )
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.mlp_ratio = mlp_ratio
        self.num_channels = num_channels
        self.image_size = image_size
        self.patch_size = patch_size
        self.pretrain_image_size = pretrain_image_size
        self.qkv_bias = qkv_bias
        self.output_channels = output_channels
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def mlp_dim(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def grid_size(self) -> int:
        """Side of the token grid at `image_size` (64 for 1024 / 16)."""
        return self.image_size // self.patch_size


class EfficientSamPromptEncoderConfig(PretrainedConfig):
    r"""
    Configuration of the EfficientSAM prompt encoder. Unlike SAM it has no mask prompt and no separate box
    embedding: a box is two corner points labelled 2 (top-left) and 3 (bottom-right), and every query is padded
    (label -1) or truncated to exactly `max_num_points` points.

    Args:
        hidden_size (`int`, *optional*, defaults to 256):
            Width of the prompt embeddings (must equal the vision `output_channels`).
        image_size (`int`, *optional*, defaults to 1024):
            Side of the model-frame in which prompt coordinates are given.
        image_embedding_size (`int`, *optional*, defaults to 64):
            Side of the image-embedding grid for the dense positional encoding.
        max_num_points (`int`, *optional*, defaults to 6):
            Points per query seen by the decoder; more are truncated, fewer padded (the official behaviour).
    """

    model_type = "efficientsam_prompt_encoder"
    base_config_key = "prompt_encoder_config"

    def __init__(
        self,
        hidden_size: int = 256,
        image_size: int = 1024,
        image_embedding_size: int = 64,
        max_num_points: int = 6,
        **kwargs,
    ):
        if hidden_size % 2 != 0:
            raise ValueError(f"hidden_size must be even for the sin/cos encoding, got {hidden_size}.")
        if max_num_points < 2:
            raise ValueError(f"max_num_points must be >= 2 (a box needs two points), got {max_num_points}.")
        self.hidden_size = hidden_size
        self.image_size = image_size
        self.image_embedding_size = image_embedding_size
        self.max_num_points = max_num_points
        super().__init__(**kwargs)


class EfficientSamMaskDecoderConfig(PretrainedConfig):
    r"""
    Configuration of the EfficientSAM mask decoder: SAM's two-way transformer and hypernetwork heads, with GELU
    everywhere and no dense (mask) prompt.

    Args:
        hidden_size (`int`, *optional*, defaults to 256):
            Width of the tokens and of the image embedding.
        num_hidden_layers (`int`, *optional*, defaults to 2):
            Depth of the two-way transformer.
        num_attention_heads (`int`, *optional*, defaults to 8):
            Heads of every decoder attention.
        mlp_dim (`int`, *optional*, defaults to 2048):
            Hidden width of the token MLP in each two-way block.
        attention_downsample_rate (`int`, *optional*, defaults to 2):
            Internal width divisor of the cross attentions (256 -> 128).
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of every decoder MLP and of the upscaling.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the decoder LayerNorms and the upscaling GroupNorm.
        num_multimask_outputs (`int`, *optional*, defaults to 3):
            Masks returned with `multimask_output=True` (one more mask token is trained for single-mask output).
        iou_head_depth (`int`, *optional*, defaults to 3):
            Number of linear layers of the IoU head.
        iou_head_hidden_dim (`int`, *optional*, defaults to 256):
            Hidden width of the IoU head.
        upscaling_dims (`list[int]`, *optional*, defaults to `[64, 32]`):
            Channels after each 2x transposed-convolution upscaling of the image embedding.
    """

    model_type = "efficientsam_mask_decoder"
    base_config_key = "mask_decoder_config"

    def __init__(
        self,
        hidden_size: int = 256,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 8,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-5,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        upscaling_dims: list[int] | tuple[int, ...] = (64, 32),
        **kwargs,
    ):
        if iou_head_depth < 2:
            raise ValueError(f"iou_head_depth must be >= 2, got {iou_head_depth}.")
        if len(upscaling_dims) < 1:
            raise ValueError("upscaling_dims needs at least one entry.")
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.mlp_dim = mlp_dim
        self.attention_downsample_rate = attention_downsample_rate
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_head_depth = iou_head_depth
        self.iou_head_hidden_dim = iou_head_hidden_dim
        self.upscaling_dims = list(upscaling_dims)
        super().__init__(**kwargs)


class EfficientSamConfig(PretrainedConfig):
    r"""
    Configuration of [`EfficientSamModel`], composed like `SamConfig` of a vision, a prompt-encoder and a
    mask-decoder config. The defaults are EfficientSAM-Ti.

    Args:
        vision_config (`dict` or `EfficientSamVisionConfig`, *optional*):
            Image-encoder configuration.
        prompt_encoder_config (`dict` or `EfficientSamPromptEncoderConfig`, *optional*):
            Prompt-encoder configuration.
        mask_decoder_config (`dict` or `EfficientSamMaskDecoderConfig`, *optional*):
            Mask-decoder configuration.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated-normal initialiser.

    Example:

    ```python
    >>> from efficientsam_hf import EfficientSamConfig, EfficientSamModel
    >>> config = EfficientSamConfig.efficientsam_s()
    >>> config.vision_config.hidden_size, config.vision_config.num_attention_heads
    (384, 6)
    ```
    """

    model_type = "efficientsam"
    sub_configs = {
        "vision_config": EfficientSamVisionConfig,
        "prompt_encoder_config": EfficientSamPromptEncoderConfig,
        "mask_decoder_config": EfficientSamMaskDecoderConfig,
    }

    def __init__(
        self,
        vision_config: dict | EfficientSamVisionConfig | None = None,
        prompt_encoder_config: dict | EfficientSamPromptEncoderConfig | None = None,
        mask_decoder_config: dict | EfficientSamMaskDecoderConfig | None = None,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.vision_config = _as_config(vision_config, EfficientSamVisionConfig)
        self.prompt_encoder_config = _as_config(prompt_encoder_config, EfficientSamPromptEncoderConfig)
        self.mask_decoder_config = _as_config(mask_decoder_config, EfficientSamMaskDecoderConfig)
        self.initializer_range = initializer_range
        widths = {
            "vision_config.output_channels": self.vision_config.output_channels,
            "prompt_encoder_config.hidden_size": self.prompt_encoder_config.hidden_size,
            "mask_decoder_config.hidden_size": self.mask_decoder_config.hidden_size,
        }
        if len(set(widths.values())) != 1:
            raise ValueError(f"The embedding widths of the three parts must agree, got {widths}.")
        if self.prompt_encoder_config.image_embedding_size != self.vision_config.grid_size:
            raise ValueError(
                "prompt_encoder_config.image_embedding_size must equal vision_config.image_size // patch_size "
                f"({self.vision_config.grid_size}), got {self.prompt_encoder_config.image_embedding_size}."
            )
        super().__init__(**kwargs)

    @classmethod
    def efficientsam_ti(cls, **kwargs) -> EfficientSamConfig:
        """EfficientSAM-Ti: ViT width 192, 3 heads (the official `build_efficient_sam_vitt`)."""
        return cls(vision_config={"hidden_size": 192, "num_attention_heads": 3}, **kwargs)

    @classmethod
    def efficientsam_s(cls, **kwargs) -> EfficientSamConfig:
        """EfficientSAM-S: ViT width 384, 6 heads (the official `build_efficient_sam_vits`)."""
        return cls(vision_config={"hidden_size": 384, "num_attention_heads": 6}, **kwargs)


def _as_config(value, config_class):
    if value is None:
        return config_class()
    if isinstance(value, config_class):
        return value
    if isinstance(value, dict):
        return config_class(**value)
    if isinstance(value, PretrainedConfig):
        return config_class(**value.to_dict())
    raise TypeError(f"{config_class.__name__} expects a dict or {config_class.__name__}, got {type(value).__name__}.")


__all__ = [
    "EfficientSamConfig",
    "EfficientSamMaskDecoderConfig",
    "EfficientSamPromptEncoderConfig",
    "EfficientSamVisionConfig",
]
