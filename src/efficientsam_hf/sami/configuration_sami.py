"""Configuration of SAMI pretraining (EfficientSAM paper, section 3.1): a masked student ViT, a cross-attention
decoder and a linear head that reconstructs a frozen teacher's features."""

from __future__ import annotations

from transformers import PretrainedConfig

from ..configuration_efficientsam import EfficientSamConfig, EfficientSamVisionConfig, _as_config

LOSS_TYPES = ("mse", "cosine")


class EfficientSamSamiConfig(PretrainedConfig):
    r"""
    Configuration of [`EfficientSamForSamiPretraining`].

    The student is the EfficientSAM ViT (`vision_config`, EfficientSAM-Ti by default) run on
    `vision_config.pretrain_image_size` inputs (224 -> a 14x14 token grid, as in the paper), so its weights load
    1:1 into [`EfficientSamModel`]'s `vision_encoder`.

    Args:
        vision_config (`dict` or `EfficientSamVisionConfig`, *optional*):
            The student ViT. Its `image_size` stays the segmentation size (1024); pretraining uses
            `pretrain_image_size`.
        mask_ratio (`float`, *optional*, defaults to 0.75):
            Fraction of tokens hidden from the student (`round(num_tokens * mask_ratio)` of them); in `[0, 1)`.
        decoder_hidden_size (`int`, *optional*, defaults to 512):
            Width of the cross-attention decoder.
        decoder_num_hidden_layers (`int`, *optional*, defaults to 8):
            Number of cross-attention blocks.
        decoder_num_attention_heads (`int`, *optional*, defaults to 16):
            Attention heads per decoder block.
        decoder_mlp_ratio (`float`, *optional*, defaults to 4.0):
            MLP width of a decoder block relative to `decoder_hidden_size`.
        teacher_hidden_size (`int`, *optional*, defaults to 256):
            Channels of the teacher features the linear head predicts (256: SAM's image-encoder neck).
        loss_type (`str`, *optional*, defaults to `"mse"`):
            `"mse"` (the paper) or `"cosine"` (mean of `1 - cosine similarity`), over all tokens.
        teacher_name_or_path (`str`, *optional*, defaults to `"facebook/sam-vit-huge"`):
            The teacher the checkpoint was trained against (a record; the teacher is never saved with the model).
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the decoder LayerNorms.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated-normal initialiser.
    """

    model_type = "efficientsam_sami"
    sub_configs = {"vision_config": EfficientSamVisionConfig}

    def __init__(
        self,
        vision_config: dict | EfficientSamVisionConfig | None = None,
        mask_ratio: float = 0.75,
        decoder_hidden_size: int = 512,
        decoder_num_hidden_layers: int = 8,
        decoder_num_attention_heads: int = 16,
        decoder_mlp_ratio: float = 4.0,
        teacher_hidden_size: int = 256,
        loss_type: str = "mse",
        teacher_name_or_path: str = "facebook/sam-vit-huge",
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if not 0.0 <= float(mask_ratio) < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1) so that the student sees some tokens, got {mask_ratio}.")
        if decoder_hidden_size % decoder_num_attention_heads != 0:
            raise ValueError(
                f"decoder_hidden_size ({decoder_hidden_size}) must be divisible by decoder_num_attention_heads "
                f"({decoder_num_attention_heads})."
            )
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}.")
        if teacher_hidden_size < 1:
            raise ValueError(f"teacher_hidden_size must be a positive int, got {teacher_hidden_size}.")
        self.vision_config = _as_config(vision_config, EfficientSamVisionConfig)
        self.mask_ratio = float(mask_ratio)
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_hidden_layers = decoder_num_hidden_layers
        self.decoder_num_attention_heads = decoder_num_attention_heads
        self.decoder_mlp_ratio = decoder_mlp_ratio
        self.teacher_hidden_size = teacher_hidden_size
        self.loss_type = loss_type
        self.teacher_name_or_path = teacher_name_or_path
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def grid_size(self) -> int:
        """Side of the student's token grid during pretraining (14 for 224 / 16)."""
        return self.vision_config.pretrain_image_size // self.vision_config.patch_size

    @property
    def num_masked_tokens(self) -> int:
        """How many of the `grid_size**2` tokens are masked in every image."""
        return int(round(self.grid_size**2 * self.mask_ratio))

    @classmethod
    def from_efficientsam_config(cls, config: EfficientSamConfig, **kwargs) -> EfficientSamSamiConfig:
        """SAMI configuration whose student is `config.vision_config` (e.g. `EfficientSamConfig.efficientsam_s()`)."""
        if not isinstance(config, EfficientSamConfig):
            raise TypeError(f"config must be an EfficientSamConfig, got {type(config).__name__}.")
        return cls(vision_config=config.vision_config.to_dict(), **kwargs)


__all__ = ["EfficientSamSamiConfig"]
