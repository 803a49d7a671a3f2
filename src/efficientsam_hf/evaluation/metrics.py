"""Mask IoU, COCO area buckets and the COCOeval("segm") call: the numbers the evaluation reports.

mIoU values are percentages (0-100, as the papers print them); AP values are COCOeval's fractions (0-1).
Objects go into area buckets by the annotation's `area` field, as COCOeval does: small < 32^2 <= medium < 96^2
<= large.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

AREA_BUCKETS = ("small", "medium", "large")
SMALL_MAX_AREA = 32**2
MEDIUM_MAX_AREA = 96**2
AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def mask_iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """Intersection over union of two binary masks of the same shape (1.0 when both are empty)."""
    if gt.shape != pred.shape:
        raise ValueError(f"pred must have the ground-truth shape {gt.shape}, got {pred.shape}.")
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = np.logical_or(gt, pred).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(gt, pred).sum() / union)


def area_bucket(area: float) -> str:
    """COCO's size class of an object from its annotated area."""
    if area < SMALL_MAX_AREA:
        return "small"
    if area < MEDIUM_MAX_AREA:
        return "medium"
    return "large"


def summarize_ious(records: list[dict], key: str = "iou") -> dict:
    """mIoU (percent) over all records and per area bucket, with counts; buckets without objects give None."""
    summary = {"count": len(records), "miou": _mean_percent([r[key] for r in records])}
    for bucket in AREA_BUCKETS:
        values = [r[key] for r in records if area_bucket(r["area"]) == bucket]
        summary[f"miou_{bucket}"] = _mean_percent(values)
        summary[f"count_{bucket}"] = len(values)
    return summary


def _mean_percent(values: list[float]) -> float | None:
    return float(100.0 * np.mean(values)) if values else None


def segm_ap(coco_gt: COCO, results: list[dict], image_ids: list[int]) -> dict:
    """COCOeval(iouType="segm") over `image_ids`: AP, AP50, AP75, APs, APm, APl (fractions; -1 where undefined,
    as COCOeval reports it). `results` are COCO results with an RLE `segmentation`, a `score` and a
    `category_id`; no `bbox` is needed."""
    if not results:
        return {name: 0.0 for name in AP_NAMES} | {"num_detections": 0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
        evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(AP_NAMES, evaluator.stats[:6])} | {
        "num_detections": len(results)
    }
