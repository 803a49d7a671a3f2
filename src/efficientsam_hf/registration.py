"""Register EfficientSAM with transformers' Auto classes (idempotent; `exist_ok` where transformers offers it)."""

import logging

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForMaskGeneration,
    AutoProcessor,
)

from .configuration_efficientsam import EfficientSamConfig, EfficientSamVisionConfig
from .image_processing_efficientsam import EfficientSamImageProcessor
from .modeling_efficientsam import EfficientSamModel, EfficientSamVisionModel
from .processing_efficientsam import EfficientSamProcessor


def register_auto_classes() -> None:
    """Make `Auto*.from_pretrained` resolve `model_type="efficientsam"` folders to this package's classes."""
    AutoConfig.register(EfficientSamConfig.model_type, EfficientSamConfig, exist_ok=True)
    AutoConfig.register(EfficientSamVisionConfig.model_type, EfficientSamVisionConfig, exist_ok=True)
    AutoModel.register(EfficientSamConfig, EfficientSamModel, exist_ok=True)
    AutoModel.register(EfficientSamVisionConfig, EfficientSamVisionModel, exist_ok=True)
    AutoModelForMaskGeneration.register(EfficientSamConfig, EfficientSamModel, exist_ok=True)
    AutoImageProcessor.register(
        EfficientSamConfig, slow_image_processor_class=EfficientSamImageProcessor, exist_ok=True
    )
    AutoProcessor.register(EfficientSamConfig, EfficientSamProcessor, exist_ok=True)


def register_for_remote_code() -> None:
    """Make every `save_pretrained` folder carry the model code and an `auto_map`, so that
    `AutoModel.from_pretrained(folder_or_hub_id, trust_remote_code=True)` works without this package installed."""
    EfficientSamConfig.register_for_auto_class()
    EfficientSamModel.register_for_auto_class("AutoModel")
    EfficientSamImageProcessor.register_for_auto_class("AutoImageProcessor")
    EfficientSamProcessor.register_for_auto_class("AutoProcessor")


def register_mask_generation_pipeline() -> None:
    """Serve `pipeline("mask-generation", ...)` with the memory-bounded EfficientSAM pipeline. It subclasses
    transformers' `MaskGenerationPipeline` and falls back to its behaviour for every other model (SAM included)."""
    from transformers import AutoModelForMaskGeneration
    from transformers.pipelines import PIPELINE_REGISTRY

    from .mask_generation import EfficientSamMaskGenerationPipeline

    current = PIPELINE_REGISTRY.supported_tasks.get("mask-generation", {})
    if current.get("impl") is EfficientSamMaskGenerationPipeline:
        return
    # Replacing the built-in entry is intended; keep transformers' "already registered" warning out of every import.
    base_logger = logging.getLogger("transformers.pipelines.base")
    level = base_logger.level
    base_logger.setLevel(logging.ERROR)
    try:
        _register(PIPELINE_REGISTRY, AutoModelForMaskGeneration, EfficientSamMaskGenerationPipeline, current)
    finally:
        base_logger.setLevel(level)


def _register(registry, auto_model, pipeline_class, current) -> None:
    registry.register_pipeline(
        "mask-generation",
        pipeline_class=pipeline_class,
        pt_model=auto_model,
        default=current.get("default"),
        type=current.get("type", "multimodal"),
    )
