"""The evaluation loop: per image, encode once, run every prompt protocol, cache the record; then aggregate.

Works with any `PromptableSegmenter`-like object (`set_image(image)`, `predict(boxes=|points=, labels=)` ->
`(masks (Q, H, W) bool, scores (Q,))`), so EfficientSAM, SAM or an oracle in a test go through the same code.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict

import numpy as np
from pycocotools.coco import COCO
from tqdm.auto import tqdm

from .cache import PredictionCache
from .clicks import click_rng, first_click, next_click
from .coco import annotation_mask, encode_mask, load_image
from .metrics import mask_iou, segm_ap, summarize_ious
from .settings import ZeroShotEvalSettings

CACHE_FORMAT_VERSION = 1


def xywh_to_xyxy(bbox, width: int, height: int) -> list[float]:
    """COCO `[x, y, w, h]` -> `[x0, y0, x1, y1]`, clipped to the image (detectors may overshoot its border)."""
    x, y, w, h = (float(v) for v in bbox)
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    return [x0, y0, min(max(x + w, x0), width), min(max(y + h, y0), height)]


def _box_records(segmenter, annotations, gt_masks, width, height) -> list[dict]:
    boxes = [xywh_to_xyxy(a["bbox"], width, height) for a in annotations]
    masks, scores = segmenter.predict(boxes=boxes)
    return [
        {"annotation_id": a["id"], "area": a["area"], "iou": mask_iou(gt_masks[a["id"]], m), "score": float(s)}
        for a, m, s in zip(annotations, masks, scores)
    ]


def _click_records(segmenter, annotations, gt_masks, strategy: str, max_clicks: int, seed: int) -> list[dict]:
    """Interactive protocol: first click by `strategy`, then corrective clicks on the previous prediction."""
    clicks = [[first_click(gt_masks[a["id"]], strategy, click_rng(seed, a["id"]))] for a in annotations]
    ious = [[] for _ in annotations]
    for round_index in range(max_clicks):
        points = [[c[:2] for c in object_clicks] for object_clicks in clicks]
        labels = [[c[2] for c in object_clicks] for object_clicks in clicks]
        masks, _ = segmenter.predict(points=points, labels=labels)
        for i, a in enumerate(annotations):
            ious[i].append(mask_iou(gt_masks[a["id"]], masks[i]))
            if round_index + 1 < max_clicks:
                # nothing left to correct: repeat the last click so every object keeps the same number of points
                clicks[i].append(next_click(gt_masks[a["id"]], masks[i]) or clicks[i][-1])
    return [
        {"annotation_id": a["id"], "area": a["area"], "clicks": [list(c) for c in cs], "ious": iou}
        for a, cs, iou in zip(annotations, clicks, ious)
    ]


def _detection_records(segmenter, detections, width, height) -> list[dict]:
    """Each detection's box becomes a prompt; its mask replaces the segmentation, score and category are kept and
    the bbox is dropped (COCOeval then derives it from the mask)."""
    if not detections:
        return []
    masks, _ = segmenter.predict(boxes=[xywh_to_xyxy(d["bbox"], width, height) for d in detections])
    return [
        {
            "image_id": d["image_id"],
            "category_id": d["category_id"],
            "score": float(d["score"]),
            "segmentation": encode_mask(m),
        }
        for d, m in zip(detections, masks)
    ]


def evaluate_image(
    segmenter, coco: COCO, image, image_id: int, settings: ZeroShotEvalSettings, detections: list[dict] | None = None
) -> dict:
    """Every prompt protocol on one image; the record holds per-object IoUs, clicks and detection masks."""
    annotations = coco.imgToAnns.get(image_id, [])
    objects = [a for a in annotations if not a["iscrowd"]]
    gt_masks = {a["id"]: annotation_mask(coco, a) for a in objects}
    nonempty = [a for a in objects if gt_masks[a["id"]].any()]
    record = {
        "image_id": image_id,
        "num_crowd_skipped": len(annotations) - len(objects),
        "num_empty_skipped": len(objects) - len(nonempty),
    }
    start = time.perf_counter()
    segmenter.set_image(image)
    record["encode_seconds"] = time.perf_counter() - start
    if settings.box_prompts:
        record["boxes"] = _box_records(segmenter, nonempty, gt_masks, image.width, image.height) if nonempty else []
    if settings.point_strategies:
        max_clicks = max(settings.num_clicks)
        record["points"] = {
            strategy: _click_records(segmenter, nonempty, gt_masks, strategy, max_clicks, settings.seed)
            if nonempty
            else []
            for strategy in settings.point_strategies
        }
    if detections is not None:
        record["detections"] = _detection_records(segmenter, detections, image.width, image.height)
    record["seconds"] = time.perf_counter() - start
    return record


def _detections_by_image(detections: list[dict] | None, image_ids, limit: int) -> dict[int, list[dict]] | None:
    if detections is None:
        return None
    by_image = {image_id: [] for image_id in image_ids}
    for d in detections:
        if d["image_id"] in by_image:
            by_image[d["image_id"]].append(d)
    return {k: sorted(v, key=lambda d: -d["score"])[:limit] for k, v in by_image.items()}


def summarize(records: list[dict], coco: COCO, settings: ZeroShotEvalSettings, with_detections: bool) -> dict:
    """Aggregate per-image records into the reported numbers."""
    image_ids = [r["image_id"] for r in records]
    summary = {
        "num_images": len(records),
        "num_crowd_skipped": sum(r["num_crowd_skipped"] for r in records),
        "num_empty_skipped": sum(r["num_empty_skipped"] for r in records),
    }
    if settings.box_prompts:
        summary["box_prompts"] = summarize_ious([o for r in records for o in r["boxes"]])
    if settings.point_strategies:
        summary["point_prompts"] = {
            strategy: {
                f"{n}_click" + ("s" if n > 1 else ""): summarize_ious(
                    [{"area": o["area"], "iou": o["ious"][n - 1]} for r in records for o in r["points"][strategy]]
                )
                for n in settings.num_clicks
            }
            for strategy in settings.point_strategies
        }
    if with_detections:
        results = [d for r in records for d in r["detections"]]
        summary["detector_boxes"] = segm_ap(coco, results, image_ids)
    encode = [r["encode_seconds"] for r in records if "encode_seconds" in r]
    summary["timing"] = {
        "images_computed": len(encode),
        "images_from_cache": len(records) - len(encode),
        "mean_seconds_per_image": float(np.mean([r["seconds"] for r in records if "seconds" in r]))
        if encode
        else None,
        "mean_encode_seconds_per_image": float(np.mean(encode)) if encode else None,
    }
    return summary


def evaluate(
    segmenter,
    coco: COCO,
    image_dir: str | os.PathLike,
    settings: ZeroShotEvalSettings,
    cache_dir: str | os.PathLike,
    detections: list[dict] | None = None,
    image_ids: list[int] | None = None,
    fingerprint: dict | None = None,
    overwrite_cache: bool = False,
    progress: bool = True,
    description: str = "zero-shot eval",
) -> dict:
    """Evaluate `segmenter` on `image_ids` (default: every image of `coco`) and return the summary.

    Records already in `cache_dir` (same fingerprint) are reused; new ones are written as each image finishes,
    so an interrupted run loses at most the image in progress.
    """
    image_ids = sorted(coco.getImgIds()) if image_ids is None else list(image_ids)
    unknown = [i for i in image_ids if i not in coco.imgs]
    if unknown:
        raise ValueError(f"image_ids must be ids of images in the annotation file, unknown: {unknown[:5]}.")
    fingerprint = {
        "format_version": CACHE_FORMAT_VERSION,
        "settings": asdict(settings),
        "with_detections": detections is not None,
        **(fingerprint or {}),
    }
    cache = PredictionCache(cache_dir, fingerprint, overwrite=overwrite_cache)
    per_image_detections = _detections_by_image(detections, image_ids, settings.max_detections_per_image)
    records = []
    for image_id in tqdm(image_ids, desc=description, unit="img", disable=not progress):
        record = cache.get(image_id)
        if record is None:
            image = load_image(coco, image_dir, image_id)
            image_detections = None if per_image_detections is None else per_image_detections[image_id]
            record = evaluate_image(segmenter, coco, image, image_id, settings, image_detections)
            cache.put(image_id, record)
        else:
            record.pop("encode_seconds", None)  # timings describe this run only
            record.pop("seconds", None)
        records.append(record)
    return summarize(records, coco, settings, with_detections=detections is not None)
