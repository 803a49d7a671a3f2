"""Readers for SA-1B folders and COCO instances files, producing a `datasets.Dataset` with one row per image.

Rows hold the encoded annotations only (COCO RLE / polygons as JSON strings); masks are decoded per sample, when a
row is read (`with_decoded_masks`) or when the collator picks the few masks it trains on (`decode_masks`). SA-1B
images carry ~100 masks of several megapixels each, so decoding everything up front is not an option.

Every structural problem is reported as a `ValueError` naming the file and the field (e.g.
`sa_1.json: annotations[3].segmentation.counts ...`), at read time where it can be checked cheaply.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, Features, List, Value
from pycocotools import mask as mask_utils

FEATURES = Features(
    {
        "index": Value("int64"),
        "image_id": Value("int64"),
        "image_path": Value("string"),
        "height": Value("int64"),
        "width": Value("int64"),
        "segmentations": List(Value("string")),
        "bboxes": List(List(Value("float32"), length=4)),
        "predicted_ious": List(Value("float32")),
        "stability_scores": List(Value("float32")),
        "point_coords": List(List(List(Value("float32"), length=2))),
    }
)


def load_sa1b_dataset(directory: str | os.PathLike, max_images: int | None = None) -> Dataset:
    """Read an SA-1B folder (`sa_*.jpg` next to `sa_*.json`) into a `Dataset`, one row per image, masks encoded."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"directory must be an existing SA-1B folder, got {str(directory)!r}.")
    files = sorted(directory.glob("sa_*.json"))
    if not files:
        raise ValueError(f"directory {str(directory)!r} holds no sa_*.json annotation files.")
    rows = []
    for path in files[:max_images]:
        rows.append(_read_sa1b_file(path, index=len(rows)))
    return Dataset.from_list(rows, features=FEATURES)


def load_coco_dataset(
    annotation_file: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    include_crowd: bool = False,
    max_images: int | None = None,
) -> Dataset:
    """Read a COCO instances JSON into a `Dataset`, one row per image that has at least one usable mask.

    Crowd regions (`iscrowd=1`) are left out by default, as in SAM-style mIoU evaluation. `image_dir` defaults to
    the annotation file's `images/` sibling folder, else its own folder.
    """
    annotation_file = Path(annotation_file)
    if image_dir is None:
        image_dir = annotation_file.parent / "images"
        if not image_dir.is_dir():
            image_dir = annotation_file.parent
    image_dir = Path(image_dir)
    data = _load_json(annotation_file)
    name = annotation_file.name
    images = _field(data, "images", list, name)
    annotations = _field(data, "annotations", list, name)

    by_id: dict[int, dict[str, Any]] = {}
    for i, info in enumerate(images):
        where = f"images[{i}]"
        _expect(isinstance(info, dict), name, where, "an object")
        image_id = _field(info, "id", int, name, where)
        height, width = _image_size(info, name, where)
        file_name = _field(info, "file_name", str, name, where)
        by_id[image_id] = _empty_row(image_id, str(image_dir / file_name), height, width)

    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        _expect(isinstance(ann, dict), name, where, "an object")
        image_id = _field(ann, "image_id", int, name, where)
        if image_id not in by_id:
            raise ValueError(f"{name}: {where}.image_id {image_id} does not match any entry of 'images'.")
        if ann.get("iscrowd", 0) and not include_crowd:
            continue
        row = by_id[image_id]
        segmentation = _check_segmentation(ann.get("segmentation"), row["height"], row["width"], name, where)
        row["segmentations"].append(json.dumps(segmentation))
        row["bboxes"].append(_check_bbox(ann.get("bbox"), name, where))
        row["predicted_ious"].append(math.nan)
        row["stability_scores"].append(math.nan)
        row["point_coords"].append([])

    rows = [row for row in by_id.values() if row["segmentations"]][:max_images]
    for index, row in enumerate(rows):
        row["index"] = index
    return Dataset.from_list(rows, features=FEATURES)


def decode_masks(row: dict[str, Any], indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode the masks of one row (all, or those at `indices`) to a `(n, height, width)` uint8 array of 0/1."""
    height, width = int(row["height"]), int(row["width"])
    indices = range(len(row["segmentations"])) if indices is None else indices
    masks = np.zeros((len(indices), height, width), dtype=np.uint8)
    for out, i in enumerate(indices):
        try:
            masks[out] = decode_segmentation(json.loads(row["segmentations"][i]), height, width)
        except ValueError as error:
            raise ValueError(
                f"{row['image_path']}: annotations[{i}].segmentation cannot be decoded: {error}"
            ) from None
    return masks


def decode_segmentation(segmentation: dict | list, height: int, width: int) -> np.ndarray:
    """COCO RLE (compressed or not) or polygons -> `(height, width)` uint8 mask."""
    if isinstance(segmentation, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    mask = mask_utils.decode(rle)
    if mask.shape != (height, width):
        raise ValueError(f"decoded mask has shape {mask.shape}, expected ({height}, {width}).")
    return mask


def with_decoded_masks(dataset: Dataset) -> Dataset:
    """The same rows, with `image` (PIL, RGB) and `masks` (`(n, H, W)` uint8) decoded when a row is read."""
    from PIL import Image

    def transform(batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        batch["image"] = [Image.open(row["image_path"]).convert("RGB") for row in rows]
        batch["masks"] = [decode_masks(row) for row in rows]
        return batch

    return dataset.with_transform(transform)


# -- SA-1B ---------------------------------------------------------------------------------------------------------


def _read_sa1b_file(path: Path, index: int) -> dict[str, Any]:
    name = path.name
    data = _load_json(path)
    info = _field(data, "image", dict, name)
    height, width = _image_size(info, name, "image")
    file_name = info.get("file_name", path.with_suffix(".jpg").name)
    _expect(isinstance(file_name, str), name, "image.file_name", "a string")
    image_path = path.parent / file_name
    if not image_path.is_file():
        raise ValueError(f"{name}: image.file_name {file_name!r} does not exist next to the annotation file.")
    image_id = info.get("image_id", index)
    _expect(isinstance(image_id, int) and not isinstance(image_id, bool), name, "image.image_id", "an integer")
    row = _empty_row(image_id, str(image_path), height, width)
    row["index"] = index
    for i, ann in enumerate(_field(data, "annotations", list, name)):
        where = f"annotations[{i}]"
        _expect(isinstance(ann, dict), name, where, "an object")
        segmentation = _field(ann, "segmentation", dict, name, where)
        _check_segmentation(segmentation, height, width, name, where)
        row["segmentations"].append(json.dumps(segmentation))
        row["bboxes"].append(_check_bbox(ann.get("bbox"), name, where))
        row["predicted_ious"].append(_number(ann, "predicted_iou", name, where))
        row["stability_scores"].append(_number(ann, "stability_score", name, where))
        row["point_coords"].append(_check_points(ann.get("point_coords"), name, where))
    return row


# -- validation helpers ----------------------------------------------------------------------------------------------


def _empty_row(image_id: int, image_path: str, height: int, width: int) -> dict[str, Any]:
    return {
        "index": -1,
        "image_id": image_id,
        "image_path": image_path,
        "height": height,
        "width": width,
        "segmentations": [],
        "bboxes": [],
        "predicted_ious": [],
        "stability_scores": [],
        "point_coords": [],
    }


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ValueError(f"annotation file {str(path)!r} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path.name}: not a valid JSON file ({error}).") from None


def _expect(condition: bool, name: str, where: str, expected: str, got: Any = None) -> None:
    if not condition:
        suffix = "" if got is None else f", got {got!r}"
        raise ValueError(f"{name}: field {where!r} must be {expected}{suffix}.")


def _field(container: dict, key: str, kind: type, name: str, where: str = "") -> Any:
    path = f"{where}.{key}" if where else key
    if not isinstance(container, dict) or key not in container:
        raise ValueError(f"{name}: missing field {path!r}.")
    value = container[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    _expect(ok, name, path, f"of type {kind.__name__}", type(value).__name__)
    return value


def _image_size(info: dict, name: str, where: str) -> tuple[int, int]:
    height = _field(info, "height", int, name, where)
    width = _field(info, "width", int, name, where)
    _expect(height > 0 and width > 0, name, f"{where}.height/width", "positive", (height, width))
    return height, width


def _number(ann: dict, key: str, name: str, where: str) -> float:
    value = ann.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    _expect(ok, name, f"{where}.{key}", "a finite number", value)
    return float(value)


def _check_bbox(bbox: Any, name: str, where: str) -> list[float]:
    ok = isinstance(bbox, list) and len(bbox) == 4
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    ok = ok and bbox[2] >= 0 and bbox[3] >= 0
    _expect(ok, name, f"{where}.bbox", "[x, y, width, height] with width, height >= 0", bbox)
    return [float(v) for v in bbox]


def _check_points(points: Any, name: str, where: str) -> list[list[float]]:
    ok = isinstance(points, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p) for p in points
    )
    _expect(ok, name, f"{where}.point_coords", "a list of [x, y] pairs", points)
    return [[float(x), float(y)] for x, y in points]


def _check_segmentation(segmentation: Any, height: int, width: int, name: str, where: str) -> dict | list:
    field = f"{where}.segmentation"
    if isinstance(segmentation, list):
        ok = len(segmentation) > 0 and all(
            isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(isinstance(v, (int, float)) for v in p)
            for p in segmentation
        )
        _expect(ok, name, field, "a non-empty list of polygons [x0, y0, x1, y1, ...] (at least 3 points each)")
        return segmentation
    _expect(isinstance(segmentation, dict), name, field, "a COCO RLE object or a list of polygons", segmentation)
    size = segmentation.get("size")
    _expect(size == [height, width], name, f"{field}.size", f"[{height}, {width}] (the image's height, width)", size)
    counts = segmentation.get("counts")
    if isinstance(counts, list):
        ok = all(isinstance(c, int) and c >= 0 for c in counts) and sum(counts) == height * width
        _expect(ok, name, f"{field}.counts", f"non-negative run lengths summing to {height * width}")
        return segmentation
    _expect(isinstance(counts, str) and len(counts) > 0, name, f"{field}.counts", "a non-empty RLE string", counts)
    runs = _rle_string_runs(counts)
    ok = runs is not None and (runs >= 0).all() and int(runs.sum()) == height * width
    _expect(ok, name, f"{field}.counts", f"a COCO RLE string whose runs sum to {height * width} (height * width)")
    return segmentation


def _rle_string_runs(counts: str) -> np.ndarray | None:
    """Run lengths of a compressed COCO RLE string (pycocotools' `rleFrString`, vectorised), or None if garbled.

    pycocotools itself accepts many garbled strings silently, so this is the check that catches them at read time.
    """
    try:
        chars = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        return None
    if chars.size == 0 or chars.min() < 0 or chars.max() > 63 or chars[-1] & 0x20:
        return None
    ends = np.flatnonzero((chars & 0x20) == 0)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 12:
        return None
    group = np.repeat(np.arange(ends.size), lengths)
    shift = 5 * (np.arange(chars.size) - starts[group])
    values = np.zeros(ends.size, dtype=np.int64)
    np.add.at(values, group, (chars & 0x1F) << shift)
    values = np.where(chars[ends] & 0x10, values - (np.int64(1) << (5 * lengths)), values)
    runs = values.copy()  # runs after the second are stored as differences to the run two before
    runs[2::2] = np.cumsum(values[2::2])
    runs[1::2] = np.cumsum(values[1::2])
    return runs
