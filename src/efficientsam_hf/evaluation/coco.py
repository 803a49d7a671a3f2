"""COCO instances / detection-results reading with validation, so a malformed file fails early and says where.

pycocotools itself trusts its input and fails deep inside with a KeyError; here every required field is checked
first and a `ValueError` names it (`annotations[12].bbox`), which is what a user fixing a converted dataset needs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from numbers import Number
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO


def _fail(where: str, expected: str, got) -> None:
    raise ValueError(f"{where} must be {expected}, got {got!r}.")


def _check_number(where: str, value, minimum: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, Number) or not np.isfinite(value):
        _fail(where, "a finite number", value)
    if minimum is not None and value < minimum:
        _fail(where, f">= {minimum}", value)


def _check_int(where: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _fail(where, "an integer", value)


def _check_bbox(where: str, bbox) -> None:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        _fail(where, "a list [x, y, width, height] of 4 numbers", bbox)
    for i, value in enumerate(bbox):
        _check_number(f"{where}[{i}]", value, minimum=0 if i >= 2 else None)


def _check_segmentation(where: str, segmentation) -> None:
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            _fail(where, "an RLE dict with 'counts' and 'size'", sorted(segmentation))
        return
    if not isinstance(segmentation, list) or not segmentation:
        _fail(where, "a non-empty list of polygons or an RLE dict", segmentation)
    for i, polygon in enumerate(segmentation):
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            _fail(f"{where}[{i}]", "a polygon [x0, y0, x1, y1, ...] with at least 3 points", polygon)


def _require(where: str, record, fields: tuple[str, ...]) -> None:
    if not isinstance(record, dict):
        _fail(where, "a JSON object", record)
    for name in fields:
        if name not in record:
            raise ValueError(f"{where}.{name} is missing (required fields: {', '.join(fields)}).")


def validate_instances(dataset: dict) -> None:
    """Check a COCO instances dict: the fields the evaluation reads exist, have the right types and agree."""
    if not isinstance(dataset, dict):
        _fail("the annotation file", "a JSON object with images, annotations and categories", type(dataset).__name__)
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            _fail(key, "a list", dataset.get(key))
    image_sizes = {}
    for i, image in enumerate(dataset["images"]):
        _require(f"images[{i}]", image, ("id", "file_name", "width", "height"))
        _check_int(f"images[{i}].id", image["id"])
        if not isinstance(image["file_name"], str) or not image["file_name"]:
            _fail(f"images[{i}].file_name", "a non-empty string", image["file_name"])
        for name in ("width", "height"):
            _check_int(f"images[{i}].{name}", image[name])
            if image[name] <= 0:
                _fail(f"images[{i}].{name}", "positive", image[name])
        if image["id"] in image_sizes:
            raise ValueError(f"images[{i}].id {image['id']} is duplicated.")
        image_sizes[image["id"]] = (image["height"], image["width"])
    category_ids = set()
    for i, category in enumerate(dataset["categories"]):
        _require(f"categories[{i}]", category, ("id",))
        _check_int(f"categories[{i}].id", category["id"])
        category_ids.add(category["id"])
    annotation_ids = set()
    for i, ann in enumerate(dataset["annotations"]):
        where = f"annotations[{i}]"
        _require(where, ann, ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"))
        _check_int(f"{where}.id", ann["id"])
        if ann["id"] in annotation_ids:
            raise ValueError(f"{where}.id {ann['id']} is duplicated.")
        annotation_ids.add(ann["id"])
        if ann["image_id"] not in image_sizes:
            _fail(f"{where}.image_id", "the id of an entry in images", ann["image_id"])
        if ann["category_id"] not in category_ids:
            _fail(f"{where}.category_id", "the id of an entry in categories", ann["category_id"])
        if ann["iscrowd"] not in (0, 1) or isinstance(ann["iscrowd"], float):
            _fail(f"{where}.iscrowd", "0 or 1", ann["iscrowd"])
        _check_number(f"{where}.area", ann["area"], minimum=0)
        _check_bbox(f"{where}.bbox", ann["bbox"])
        _check_segmentation(f"{where}.segmentation", ann["segmentation"])


def validate_detections(detections, coco: COCO) -> None:
    """Check a COCO results list (what a detector writes): image and category known, bbox and score numbers."""
    if not isinstance(detections, list):
        _fail("the detections file", "a JSON list of {image_id, category_id, bbox, score}", type(detections).__name__)
    for i, det in enumerate(detections):
        where = f"detections[{i}]"
        _require(where, det, ("image_id", "category_id", "bbox", "score"))
        if det["image_id"] not in coco.imgs:
            _fail(f"{where}.image_id", "the id of an image in the annotation file", det["image_id"])
        if det["category_id"] not in coco.cats:
            _fail(f"{where}.category_id", "the id of a category in the annotation file", det["category_id"])
        _check_bbox(f"{where}.bbox", det["bbox"])
        _check_number(f"{where}.score", det["score"])


def _read_json(path: str | os.PathLike, argument: str):
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{argument} must be an existing JSON file, got {str(path)!r}.")
    try:
        with path.open() as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{argument} {str(path)!r} is not valid JSON: {error}.") from error


def coco_from_dict(dataset: dict) -> COCO:
    """A pycocotools COCO index over an already validated dict, without pycocotools' prints."""
    validate_instances(dataset)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(annotation_file: str | os.PathLike) -> COCO:
    """Read and validate a COCO instances JSON."""
    return coco_from_dict(_read_json(annotation_file, "annotation_file"))


def load_detections(detections_file: str | os.PathLike, coco: COCO) -> list[dict]:
    """Read and validate a COCO results JSON of detections (boxes, scores, categories)."""
    detections = _read_json(detections_file, "detections_file")
    validate_detections(detections, coco)
    return detections


def gt_boxes_as_detections(coco: COCO) -> list[dict]:
    """Ground-truth boxes of non-crowd objects as a perfect detector's output (score 1): the AP upper bound of
    box-to-mask, useful when no detector results are at hand."""
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0}
        for a in coco.dataset["annotations"]
        if not a["iscrowd"]
    ]


def annotation_mask(coco: COCO, annotation: dict) -> np.ndarray:
    """The annotation's binary mask (H, W) at the image's size, decoded by pycocotools."""
    return coco.annToMask(annotation).astype(bool)


def encode_mask(mask: np.ndarray) -> dict:
    """COCO RLE of a binary mask, with `counts` as str so it can go in JSON."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def load_image(coco: COCO, image_dir: str | os.PathLike, image_id: int) -> Image.Image:
    """The image as RGB in memory (file untouched), checked against the size the annotations were made for."""
    info = coco.imgs[image_id]
    path = Path(image_dir) / info["file_name"]
    if not path.is_file():
        raise ValueError(f"image_dir must contain {info['file_name']!r} (image id {image_id}), not found at {path}.")
    with Image.open(path) as image:
        image = image.convert("RGB")
    if image.size != (info["width"], info["height"]):
        raise ValueError(
            f"{path} is {image.size[0]}x{image.size[1]} but the annotation file says "
            f"width={info['width']}, height={info['height']} for image id {image_id}."
        )
    return image
