"""Segment everything: transformers' `mask-generation` pipeline, made fast and memory-bounded for EfficientSAM.

transformers' `MaskGenerationPipeline` upsamples every low-resolution mask of a point batch to the full image in
float32 before it filters any of them, so its memory grows with `points_per_batch` and most of its time goes into
masks that the predicted-IoU filter then throws away. This subclass keeps the pipeline's interface and output, and:

- decodes the points of a batch in internal chunks of at most `decoder_chunk_size` queries;
- filters on the predicted IoU before upsampling, so rejected masks are never upsampled;
- upsamples and filters the survivors in chunks of `upsample_chunk_size` masks (peak memory independent of
  `points_per_batch`), with the image processor's vectorised stability score, boxes, NMS and RLE.

The result equals the stock pipeline's (the "exhaustive path": decode every point, upsample all, then filter) mask
for mask; tests check it. For models other than EfficientSAM the stock behaviour is used unchanged.
"""

from __future__ import annotations

import torch
from transformers.pipelines import MaskGenerationPipeline

from .modeling_efficientsam import EfficientSamModel

_UNIT_INTERVAL_ARGUMENTS = ("pred_iou_thresh", "stability_score_thresh", "crops_nms_thresh")


class EfficientSamMaskGenerationPipeline(MaskGenerationPipeline):
    """`pipeline("mask-generation", model=...)` for EfficientSAM (registered for the task on `import efficientsam_hf`).

    Extra arguments beyond SAM's pipeline: `output_coco_annotations=True` adds `"annotations"`, one COCO dict per
    mask (`segmentation` as compressed pycocotools RLE, `area`, `bbox` as xywh, `predicted_iou`).
    """

    decoder_chunk_size = 16
    upsample_chunk_size = 16

    def check_model_type(self, supported_models):
        if isinstance(self.model, EfficientSamModel):
            return
        super().check_model_type(supported_models)

    def _sanitize_parameters(self, **kwargs):
        for name in _UNIT_INTERVAL_ARGUMENTS:
            value = kwargs.get(name)
            if value is not None and not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        points_per_batch = kwargs.get("points_per_batch")
        if points_per_batch is not None and (not isinstance(points_per_batch, int) or points_per_batch <= 0):
            raise ValueError(
                f"points_per_batch must be a positive integer (or None for all at once), got {points_per_batch}."
            )
        overlap = kwargs.get("crop_overlap_ratio")
        if overlap is not None and not 0.0 <= float(overlap) < 1.0:
            raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {overlap}.")
        layers = kwargs.get("crops_n_layers")
        if layers is not None and (not isinstance(layers, int) or layers < 0):
            raise ValueError(f"crops_n_layers must be a non-negative integer, got {layers}.")
        output_coco = kwargs.pop("output_coco_annotations", None)
        preprocess_kwargs, forward_params, postprocess_kwargs = super()._sanitize_parameters(**kwargs)
        if output_coco is not None:
            postprocess_kwargs["output_coco_annotations"] = output_coco
        return preprocess_kwargs, forward_params, postprocess_kwargs

    def _forward(
        self,
        model_inputs,
        pred_iou_thresh=0.88,
        stability_score_thresh=0.95,
        mask_threshold=0,
        stability_score_offset=1,
        max_hole_area=None,
        max_sprinkle_area=None,
    ):
        if not isinstance(self.model, EfficientSamModel):
            return super()._forward(
                model_inputs,
                pred_iou_thresh,
                stability_score_thresh,
                mask_threshold,
                stability_score_offset,
                max_hole_area,
                max_sprinkle_area,
            )
        if max_hole_area or max_sprinkle_area:
            raise ValueError("max_hole_area / max_sprinkle_area are not supported for EfficientSAM.")
        crop_box = model_inputs.pop("input_boxes")[0]
        is_last = model_inputs.pop("is_last")
        crop_size = model_inputs.pop("original_sizes").tolist()
        model_inputs.pop("reshaped_input_sizes", None)
        full_image_size = model_inputs.pop("full_image_size").tolist()

        rles, scores, boxes = [], [], []
        for low_res, iou_scores in self._decode_in_chunks(
            model_inputs["image_embeddings"], model_inputs["input_points"], model_inputs["input_labels"]
        ):
            if pred_iou_thresh > 0:  # the same test filter_masks applies, before any upsampling
                keep = iou_scores > pred_iou_thresh
                low_res, iou_scores = low_res[keep], iou_scores[keep]
            for start in range(0, low_res.shape[0], self.upsample_chunk_size):
                chunk = low_res[start : start + self.upsample_chunk_size]
                masks = self.image_processor.post_process_masks(chunk[None, :, None], crop_size, binarize=False)[0]
                chunk_rles, chunk_scores, chunk_boxes = self.image_processor.filter_masks(
                    masks,
                    iou_scores[start : start + self.upsample_chunk_size, None],
                    full_image_size,
                    crop_box,
                    pred_iou_thresh,
                    stability_score_thresh,
                    mask_threshold,
                    stability_score_offset,
                )
                rles.extend(chunk_rles)
                scores.append(chunk_scores)
                boxes.append(chunk_boxes)
        return {
            "masks": rles,
            "is_last": is_last,
            "boxes": torch.cat(boxes) if boxes else torch.zeros(0, 4),
            "iou_scores": torch.cat(scores) if scores else torch.zeros(0),
        }

    def _decode_in_chunks(self, image_embeddings, input_points, input_labels):
        """Yield low-res logits `(k * 3, 256, 256)` and IoU `(k * 3,)` for `k <= decoder_chunk_size` points at a
        time, so that memory is bounded whatever `points_per_batch` is."""
        for start in range(0, input_points.shape[1], self.decoder_chunk_size):
            stop = start + self.decoder_chunk_size
            output = self.model(
                image_embeddings=image_embeddings,
                input_points=input_points[:, start:stop],
                input_labels=input_labels[:, start:stop],
                multimask_output=True,
            )
            yield output.pred_masks[0].flatten(0, 1), output.iou_scores[0].flatten(0, 1)

    def postprocess(
        self,
        model_outputs,
        output_rle_mask=False,
        output_bboxes_mask=False,
        crops_nms_thresh=0.7,
        output_coco_annotations=False,
    ):
        result = super().postprocess(
            model_outputs,
            output_rle_mask=output_rle_mask or output_coco_annotations,
            output_bboxes_mask=output_bboxes_mask,
            crops_nms_thresh=crops_nms_thresh,
        )
        if output_coco_annotations:
            result["annotations"] = rles_to_coco_annotations(result["rle_mask"], result["scores"])
            if not output_rle_mask:
                del result["rle_mask"]
        return result


def rles_to_coco_annotations(rles, scores) -> list[dict]:
    """Uncompressed column-major RLEs -> COCO annotation dicts (compressed RLE, area, xywh bbox, predicted IoU)."""
    from pycocotools import mask as mask_utils

    annotations = []
    for rle, score in zip(rles, scores):
        height, width = rle["size"]
        uncompressed = {"size": [height, width], "counts": [int(c) for c in rle["counts"]]}
        annotations.append(coco_annotation(mask_utils.frPyObjects(uncompressed, height, width), score))
    return annotations


def coco_annotation(compressed_rle: dict, score) -> dict:
    """One COCO annotation dict (JSON-ready) from a pycocotools compressed RLE and its predicted IoU."""
    from pycocotools import mask as mask_utils

    counts = compressed_rle["counts"]
    segmentation = {
        "size": list(compressed_rle["size"]),
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }
    return {
        "segmentation": segmentation,
        "area": int(mask_utils.area(compressed_rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(compressed_rle)],
        "predicted_iou": float(score),
    }
