"""PLACEHOLDER being replaced by the image-processor work (issue 4)."""

from transformers.image_processing_utils import BaseImageProcessor


class EfficientSamImageProcessor(BaseImageProcessor):
    model_input_names = ["pixel_values"]
