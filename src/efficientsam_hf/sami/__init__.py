"""SAMI pretraining (EfficientSAM, section 3.1): masked student ViT, cross-attention decoder, frozen teacher."""

from .configuration_sami import EfficientSamSamiConfig
from .data import SamiPretrainingDataset, collate_sami, load_images, precompute_teacher_features
from .export import export_sami_checkpoint, sami_to_efficientsam
from .modeling_sami import EfficientSamForSamiPretraining, EfficientSamSamiOutput, random_masking
from .teacher import DEFAULT_TEACHER, SamiTeacher, resample_to_grid
from .transforms import SamiTransform

__all__ = [
    "DEFAULT_TEACHER",
    "EfficientSamForSamiPretraining",
    "EfficientSamSamiConfig",
    "EfficientSamSamiOutput",
    "SamiPretrainingDataset",
    "SamiTeacher",
    "SamiTransform",
    "collate_sami",
    "export_sami_checkpoint",
    "load_images",
    "precompute_teacher_features",
    "random_masking",
    "resample_to_grid",
    "sami_to_efficientsam",
]
