"""EfficientSAM for the Hugging Face stack.

Importing the package registers EfficientSAM with transformers' Auto classes (AutoConfig, AutoModel,
AutoModelForMaskGeneration, AutoImageProcessor, AutoProcessor) so that `from_pretrained` on a converted folder or
Hub id works exactly as it does for SAM. Nothing heavy runs at import time.
"""

from .configuration_efficientsam import (
    EfficientSamConfig,
    EfficientSamMaskDecoderConfig,
    EfficientSamPromptEncoderConfig,
    EfficientSamVisionConfig,
)
from .image_processing_efficientsam import EfficientSamImageProcessor
from .modeling_efficientsam import (
    EfficientSamImageSegmentationOutput,
    EfficientSamModel,
    EfficientSamPreTrainedModel,
    EfficientSamVisionEncoderOutput,
    EfficientSamVisionModel,
)
from .processing_efficientsam import EfficientSamProcessor
from .registration import register_auto_classes, register_for_remote_code, register_mask_generation_pipeline

__version__ = "0.1.0"

# Training-side names load on first use (they pull in `datasets`), keeping `import efficientsam_hf` light.
_LAZY = {
    "EfficientSamPredictor": ".predictor",
    "EfficientSamSamiConfig": ".sami",
    "EfficientSamForSamiPretraining": ".sami",
    "SamiTeacher": ".sami",
    "export_sami_checkpoint": ".sami",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_auto_classes()
register_for_remote_code()
register_mask_generation_pipeline()

__all__ = [
    "EfficientSamForSamiPretraining",
    "EfficientSamPredictor",
    "EfficientSamSamiConfig",
    "SamiTeacher",
    "export_sami_checkpoint",
    "EfficientSamConfig",
    "EfficientSamImageProcessor",
    "EfficientSamImageSegmentationOutput",
    "EfficientSamMaskDecoderConfig",
    "EfficientSamModel",
    "EfficientSamPreTrainedModel",
    "EfficientSamProcessor",
    "EfficientSamPromptEncoderConfig",
    "EfficientSamVisionConfig",
    "EfficientSamVisionEncoderOutput",
    "EfficientSamVisionModel",
    "register_auto_classes",
]
