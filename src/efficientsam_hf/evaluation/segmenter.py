"""Any (model, processor) pair with SAM's prompt interface, behind the two calls the evaluation makes.

The evaluation only needs "encode this image once" and "masks for these prompts". Both EfficientSAM and
transformers' `SamModel` provide `get_image_embeddings(pixel_values)` and
`model(image_embeddings=..., input_points=..., input_labels=..., input_boxes=..., multimask_output=...)` returning
`iou_scores (B, Q, M)` and low-res `pred_masks (B, Q, M, h, w)`, and their processors share the call
`processor(images, input_points=..., input_labels=..., input_boxes=..., return_tensors="pt")` and
`post_process_masks(masks, original_sizes, reshaped_input_sizes)`. Their differences (SAM pads to the longest side,
EfficientSAM stretches; SAM's processor returns float64 prompts) stay inside the processor or are absorbed here
(dtype/device casts), so no model-specific branch exists anywhere in the evaluation.

Coordinates are always converted by the processor and masks always resized by its image processor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

MASK_SELECTIONS = {True: "multimask_highest_predicted_iou", False: "single_mask_output"}


class PromptableSegmenter:
    """Encode an image once (`set_image`), then get one mask per prompt (`predict`).

    Args:
        model: a SAM-interface model (`EfficientSamModel`, `SamModel`, ...), put in eval mode here.
        processor: its processor (`EfficientSamProcessor`, `SamProcessor`, ...).
        multimask_output: keep, per prompt, the one of the multimask outputs with the highest predicted IoU (the
            default, as SAM and EfficientSAM evaluate); with False the single-mask output is kept.
        prompt_batch_size: prompts decoded per forward call (memory bound, results do not depend on it).
    """

    def __init__(self, model, processor, multimask_output: bool = True, prompt_batch_size: int = 64):
        if not callable(getattr(model, "get_image_embeddings", None)):
            raise TypeError(f"model must have SAM's get_image_embeddings method, got {type(model).__name__}.")
        if not callable(processor):
            raise TypeError(f"processor must be a callable SAM-style processor, got {type(processor).__name__}.")
        if prompt_batch_size < 1:
            raise ValueError(f"prompt_batch_size must be >= 1, got {prompt_batch_size}.")
        self.model = model.eval()
        self.processor = processor
        self.multimask_output = bool(multimask_output)
        self.prompt_batch_size = int(prompt_batch_size)
        image_processor = getattr(processor, "image_processor", processor)
        self._post_process_masks = getattr(image_processor, "post_process_masks", None) or processor.post_process_masks
        self._image = None
        self._embeddings = None

    @property
    def mask_selection(self) -> str:
        return MASK_SELECTIONS[self.multimask_output]

    @property
    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        parameter = next(self.model.parameters())
        return parameter.device, parameter.dtype

    def _to_model(self, tensor: torch.Tensor) -> torch.Tensor:
        device, dtype = self._device_dtype
        return tensor.to(device=device, dtype=dtype) if tensor.is_floating_point() else tensor.to(device=device)

    @torch.no_grad()
    def set_image(self, image: Image.Image) -> None:
        """Run the image encoder once; the following `predict` calls reuse its embeddings."""
        inputs = self.processor(images=image, return_tensors="pt")
        self._embeddings = self.model.get_image_embeddings(self._to_model(inputs["pixel_values"]))
        self._image = image

    def predict(
        self,
        boxes: Sequence[Sequence[float]] | None = None,
        points: Sequence[Sequence[Sequence[float]]] | None = None,
        labels: Sequence[Sequence[int]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One mask per prompt, at the original image size.

        Args:
            boxes: `(Q, 4)` boxes `(x0, y0, x1, y1)` in original-image pixels.
            points: `(Q, N, 2)` points `(x, y)` in original-image pixels (the same N for every prompt).
            labels: `(Q, N)` point labels, 1 positive, 0 negative.

        Returns:
            `masks` bool `(Q, H, W)` and `scores` float `(Q,)`, the kept mask's predicted IoU.
        """
        if self._embeddings is None:
            raise ValueError("set_image must be called before predict.")
        if (boxes is None) == (points is None):
            raise ValueError("Give exactly one of boxes or points.")
        if points is not None and (labels is None or len(labels) != len(points)):
            raise ValueError("labels must be given with points, one list of labels per prompt.")
        num_prompts = len(boxes if boxes is not None else points)
        height, width = self._image.height, self._image.width
        if num_prompts == 0:
            return np.zeros((0, height, width), dtype=bool), np.zeros((0,), dtype=np.float32)
        masks, scores = [], []
        for start in range(0, num_prompts, self.prompt_batch_size):
            chunk = slice(start, start + self.prompt_batch_size)
            if boxes is not None:
                prompts = {"input_boxes": [[list(map(float, b)) for b in boxes[chunk]]]}
            else:
                prompts = {
                    "input_points": [[[list(map(float, p)) for p in query] for query in points[chunk]]],
                    "input_labels": [[list(map(int, q)) for q in labels[chunk]]],
                }
            chunk_masks, chunk_scores = self._predict_chunk(prompts)
            masks.append(chunk_masks)
            scores.append(chunk_scores)
        return np.concatenate(masks), np.concatenate(scores)

    @torch.no_grad()
    def _predict_chunk(self, prompts: dict) -> tuple[np.ndarray, np.ndarray]:
        inputs = self.processor(images=self._image, return_tensors="pt", **prompts)
        model_prompts = {
            k: self._to_model(inputs[k]) for k in ("input_boxes", "input_points", "input_labels") if k in inputs
        }
        outputs = self.model(
            image_embeddings=self._embeddings, multimask_output=self.multimask_output, **model_prompts
        )
        iou_scores, pred_masks = outputs.iou_scores, outputs.pred_masks  # (1, Q, M), (1, Q, M, h, w)
        best = iou_scores.argmax(dim=-1)  # (1, Q); M == 1 without multimask
        kept_scores = iou_scores.gather(-1, best[..., None])[..., 0]
        index = best[..., None, None, None].expand(-1, -1, 1, *pred_masks.shape[-2:])
        kept_masks = pred_masks.gather(2, index)  # (1, Q, 1, h, w): select before upsampling, 1/M of the work
        full = self._post_process_masks(
            kept_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )[0]  # (Q, 1, H, W) bool
        return full[:, 0].numpy().astype(bool), kept_scores[0].float().cpu().numpy()
