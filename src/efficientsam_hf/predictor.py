"""EfficientSamPredictor: encode an image once, then prompt it many times (what users of the official code ask for).

It is a thin loop around the processor and the model, never a second implementation: the processor converts the
prompts to the 1024x1024 frame, `model.get_image_embeddings` runs once in `set_image`, and every `predict` only runs
the prompt encoder and mask decoder on the cached embedding; the image processor's `post_process_masks` resizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .modeling_efficientsam import EfficientSamModel
from .processing_efficientsam import EfficientSamProcessor


@dataclass
class EfficientSamPrediction:
    """Result of `EfficientSamPredictor.predict`, one row per query, masks sorted by `scores`, best first.

    Attributes:
        masks (`torch.BoolTensor` of shape (Q, M, H, W)): masks at the original image size.
        scores (`torch.FloatTensor` of shape (Q, M)): predicted IoU of each mask.
        low_res_logits (`torch.FloatTensor` of shape (Q, M, 256, 256)): the decoder's logits in the model frame.
    """

    masks: torch.Tensor
    scores: torch.Tensor
    low_res_logits: torch.Tensor


class EfficientSamPredictor:
    """
    Repeated prompting of one image with a cached image embedding.

    ```python
    predictor = EfficientSamPredictor(model, processor)
    predictor.set_image(image)  # the encoder runs here, once
    prediction = predictor.predict(points=[[450, 600]], labels=[1])  # prompt encoder + decoder only
    best_mask = prediction.masks[0, 0]  # query 0, best of the M masks
    ```

    Prompts are in original-image pixels. `points` is `(N, 2)` for one query or `(Q, N, 2)` for Q queries,
    `labels` `(N,)` / `(Q, N)` (1 positive, 0 negative; default all 1), `boxes` `(4,)` / `(Q, 4)` as
    `(x0, y0, x1, y1)`; with both, box q joins point query q. The processor validates them and raises a
    `ValueError` naming the argument for anything outside the image.

    Args:
        model ([`EfficientSamModel`]): the model (put it in eval mode and on its device first).
        processor ([`EfficientSamProcessor`], *optional*): defaults to one with the official settings.
    """

    def __init__(self, model: EfficientSamModel, processor: EfficientSamProcessor | None = None):
        if not isinstance(model, EfficientSamModel):
            raise TypeError(f"model must be an EfficientSamModel, got {type(model).__name__}.")
        self.model = model
        self.processor = processor if processor is not None else EfficientSamProcessor()
        self.reset_image()

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs) -> EfficientSamPredictor:
        """Model and processor from one folder or Hub id (the processor falls back to the official settings)."""
        model = EfficientSamModel.from_pretrained(name_or_path, **kwargs).eval()
        try:
            processor = EfficientSamProcessor.from_pretrained(name_or_path)
        except (OSError, ValueError):
            processor = EfficientSamProcessor()
        return cls(model, processor)

    def reset_image(self) -> None:
        """Forget the cached embedding."""
        self.image_embeddings = None
        self.original_size = None

    @property
    def is_image_set(self) -> bool:
        return self.image_embeddings is not None

    @torch.no_grad()
    def set_image(self, image) -> None:
        """Encode `image` (PIL, numpy HWC/CHW or tensor, as the processor accepts) and cache its embedding."""
        inputs = self.processor(images=image, return_tensors="pt")
        if inputs["pixel_values"].shape[0] != 1:
            raise ValueError(f"set_image takes one image, got a batch of {inputs['pixel_values'].shape[0]}.")
        pixel_values = inputs["pixel_values"].to(device=self.model.device, dtype=self.model.dtype)
        self.image_embeddings = self.model.get_image_embeddings(pixel_values)
        self.original_size = tuple(int(v) for v in inputs["original_sizes"][0].tolist())

    @torch.no_grad()
    def predict(self, points=None, labels=None, boxes=None, multimask_output: bool = True) -> EfficientSamPrediction:
        """
        Masks for the prompts on the image of the last `set_image`.

        Args:
            points, labels, boxes: see the class docstring (at least points or boxes).
            multimask_output (`bool`, defaults to `True`): M = 3 candidate masks per query, else M = 1.

        Returns:
            [`EfficientSamPrediction`] with masks, scores and low-res logits, sorted by score along M (best first).
        """
        if not self.is_image_set:
            raise ValueError("call set_image(image) before predict(...).")
        if points is None and boxes is None:
            raise ValueError("predict needs points or boxes (or both).")
        if labels is not None and points is None:
            raise ValueError("labels were given without points.")
        prompts = self.processor.prepare_prompts(
            [self.original_size],
            input_points=None if points is None else [_queries(points, 2, "points")],
            input_labels=None if labels is None else [_queries(labels, 1, "labels")],
            input_boxes=None if boxes is None else [_queries(boxes, 1, "boxes")],
        )
        prompts = {name: tensor.to(self.model.device) for name, tensor in prompts.items()}
        output = self.model(image_embeddings=self.image_embeddings, multimask_output=multimask_output, **prompts)
        scores, order = output.iou_scores[0].float().sort(dim=-1, descending=True)
        logits = torch.gather(output.pred_masks[0].float(), 1, order[..., None, None].expand_as(output.pred_masks[0]))
        masks = self.processor.image_processor.post_process_masks(logits[None], [self.original_size])[0]
        return EfficientSamPrediction(masks=masks, scores=scores, low_res_logits=logits)


def _queries(value, point_ndim: int, name: str) -> list:
    """Add the query axis when one query is given: points (N, 2) -> (1, N, 2), labels (N,) -> (1, N), boxes (4,)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be numbers (a nested list, numpy array or tensor), got {value!r}.") from error
    if array.ndim == point_ndim:
        array = array[None]
    if array.ndim != point_ndim + 1:
        raise ValueError(f"{name} must have {point_ndim} or {point_ndim + 1} dimensions, got shape {array.shape}.")
    return array.tolist()


__all__ = ["EfficientSamPrediction", "EfficientSamPredictor"]
