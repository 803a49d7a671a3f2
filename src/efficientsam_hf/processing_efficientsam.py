"""PLACEHOLDER being replaced by the processor work (issue 4)."""

from transformers.processing_utils import ProcessorMixin


class EfficientSamProcessor(ProcessorMixin):
    attributes = ["image_processor"]
    image_processor_class = "EfficientSamImageProcessor"
