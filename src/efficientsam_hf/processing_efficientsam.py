"""EfficientSamProcessor: images and prompts in, model tensors out, with validation.

This file is copied into every `save_pretrained` folder for `trust_remote_code` users, so it imports only torch,
numpy, transformers and the image processor next to it.

Prompts follow `SamProcessor`'s nesting and are given in original-image pixels:

- `input_points`: per image, per query, per point, `(x, y)` -> `[B, Q, N, 2]` (a depth-3 list, per image per point,
  is one query per image, as in `SamProcessor`).
- `input_labels`: per image, per query, per point -> `[B, Q, N]`; 1 positive click, 0 negative click, 2 box top-left,
  3 box bottom-right, -1 padding (whose point must be `(-1, -1)`). Defaults to 1 (and -1 for `(-1, -1)` points).
- `input_boxes`: per image, per box, `(x0, y0, x1, y1)` -> `[B, Q, 4]`; the model turns each box into two points
  labelled 2 and 3 of the query with the same index.

EfficientSAM stretches each image to 1024x1024, so coordinates are rescaled **per axis**: `x * 1024 / W` and
`y * 1024 / H`, in float32 and in exactly the order of the official `get_rescaled_pts`, so the model sees the very
same numbers as the official code. Ragged batches (images with different numbers of queries, points or boxes) are
padded: missing points become `(-1, -1)` with label -1; missing queries become all-padding queries and missing boxes
`(-1, -1, -1, -1)`. The outputs of padded queries carry no information and should be dropped.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .image_processing_efficientsam import EfficientSamImageProcessor

VALID_LABELS = (-1, 0, 1, 2, 3)
PAD_LABEL = -1
PAD_COORDINATE = -1.0


class EfficientSamProcessor(ProcessorMixin):
    r"""
    Processor of EfficientSAM: wraps an [`EfficientSamImageProcessor`] and converts point/box prompts to the model's
    1024x1024 frame, like [`SamProcessor`] does for SAM.

    Call it with images and prompts in original-image pixel coordinates:

    ```python
    inputs = processor(image, input_points=[[[[450, 600]]]], input_labels=[[[1]]], return_tensors="pt")
    outputs = model(**inputs)
    masks = processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"])
    ```

    Unlike `SamProcessor`, batches whose images have different numbers of queries, points or boxes are padded (see
    the module docstring), and every prompt is validated (finite, inside the image, boxes ordered, known labels,
    matching shapes); a `ValueError` or `TypeError` names the argument and what was expected.

    Args:
        image_processor ([`EfficientSamImageProcessor`], *optional*): the image processor (default: a new one with
            the official settings).
    """

    def __init__(self, image_processor=None):
        if image_processor is None:
            image_processor = EfficientSamImageProcessor()
        super().__init__(image_processor)

    @property
    def target_size(self) -> tuple[int, int]:
        """(height, width) of the model frame."""
        size = self.image_processor.size
        return int(size["height"]), int(size["width"])

    @property
    def model_input_names(self) -> list[str]:
        return list(self.image_processor.model_input_names) + ["original_sizes", "reshaped_input_sizes"]

    def __call__(
        self,
        images=None,
        input_points=None,
        input_labels=None,
        input_boxes=None,
        return_tensors: str | None = "pt",
        original_sizes=None,
        **kwargs,
    ) -> BatchFeature:
        """
        Pre-process images and prompts.

        Args:
            images: one image or a list of images (see [`EfficientSamImageProcessor`]).
            input_points (nested list, `np.ndarray` or `torch.Tensor`, *optional*): `[B][Q][N][2]` (or `[B][N][2]` for
                one query per image) `(x, y)` points in original-image pixels, `0 <= x <= W`, `0 <= y <= H`;
                padding points are `(-1, -1)` with label -1.
            input_labels (nested list, `np.ndarray` or `torch.Tensor`, *optional*): `[B][Q][N]` (or `[B][N]`) labels
                in {1, 0, -1, 2, 3}, one per point. Defaults to 1 for every point (-1 for `(-1, -1)` points).
            input_boxes (nested list, `np.ndarray` or `torch.Tensor`, *optional*): `[B][Q][4]` boxes
                `(x0, y0, x1, y1)` in original-image pixels with `x0 <= x1`, `y0 <= y1`. If points are given too,
                each image needs as many boxes as point queries (box q joins query q).
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"` or `"np"` (`None` behaves like `"pt"`).
            original_sizes (*optional*): `(height, width)` per image, to convert prompts without images (e.g. when
                the image embeddings are cached); ignored when `images` is given.
            **kwargs: forwarded to the image processor (e.g. `input_data_format`, `device`).

        Returns:
            [`BatchFeature`] with `pixel_values` (B, 3, 1024, 1024), `original_sizes` (B, 2) and
            `reshaped_input_sizes` (B, 2) (without `pixel_values` when no images are given), plus when given
            `input_points` (B, Q, N, 2) float32 and `input_labels` (B, Q, N) int64, and `input_boxes` (B, Q, 4)
            float32, all coordinates in the 1024x1024 frame.
        """
        _check_return_tensors(return_tensors)
        if images is not None:
            encoding = self.image_processor(images, return_tensors="pt", **kwargs)
            sizes = encoding["original_sizes"].tolist()
            data = dict(encoding)
        elif original_sizes is not None:
            sizes = _parse_sizes(original_sizes)
            target = self.target_size
            data = {
                "original_sizes": torch.tensor(sizes, dtype=torch.int64),
                "reshaped_input_sizes": torch.tensor([target] * len(sizes), dtype=torch.int64),
            }
        else:
            raise ValueError("Pass images (or original_sizes, to convert prompts for cached image embeddings).")

        data.update(
            self.prepare_prompts(sizes, input_points=input_points, input_labels=input_labels, input_boxes=input_boxes)
        )
        if str(getattr(return_tensors, "value", return_tensors)) == "np":
            data = {k: v.numpy() for k, v in data.items()}
        return BatchFeature(data=data)

    def prepare_prompts(
        self, original_sizes, input_points=None, input_labels=None, input_boxes=None
    ) -> dict[str, torch.Tensor]:
        """
        Validate, pad and rescale prompts to the model frame (the prompt half of `__call__`).

        Args:
            original_sizes: `(height, width)` per image.
            input_points, input_labels, input_boxes: as for `__call__`.

        Returns:
            `dict` with the prompt tensors that were given (`input_points` and `input_labels` together).
        """
        sizes = _parse_sizes(original_sizes)
        out = {}
        if input_labels is not None and input_points is None:
            raise ValueError("input_labels was given without input_points.")
        point_queries = None
        if input_points is not None:
            points, labels, present = _parse_points(input_points, input_labels, len(sizes))
            _validate_points(points, labels, present, sizes)
            labels_t = torch.from_numpy(labels)
            out["input_points"] = self._rescale_points(torch.from_numpy(points.astype(np.float32)), labels_t, sizes)
            out["input_labels"] = labels_t
            point_queries = present[..., 0].sum(-1).tolist()
        if input_boxes is not None:
            boxes, present = _parse_boxes(input_boxes, len(sizes))
            _validate_boxes(boxes, present, sizes)
            if point_queries is not None:
                box_queries = present.sum(-1).tolist()
                if box_queries != point_queries:
                    raise ValueError(
                        "input_boxes and input_points must give every image the same number of queries (box q joins "
                        f"point query q); got {box_queries} boxes and {point_queries} point queries per image."
                    )
            out["input_boxes"] = self._rescale_boxes(torch.from_numpy(boxes.astype(np.float32)), sizes)
        return out

    def _rescale_points(self, points: torch.Tensor, labels: torch.Tensor, sizes) -> torch.Tensor:
        """Original pixels -> model frame per axis, as the official `get_rescaled_pts`; padding stays (-1, -1)."""
        target_h, target_w = self.target_size
        rescaled = torch.empty_like(points)
        for b, (height, width) in enumerate(sizes):
            x = points[b, ..., 0] * target_w / width
            y = points[b, ..., 1] * target_h / height
            rescaled[b] = torch.stack([x, y], dim=-1)
        return torch.where((labels == PAD_LABEL).unsqueeze(-1), PAD_COORDINATE, rescaled)

    def _rescale_boxes(self, boxes: torch.Tensor, sizes) -> torch.Tensor:
        """Boxes are rescaled corner by corner with the point rule; padded boxes stay (-1, -1, -1, -1)."""
        target_h, target_w = self.target_size
        rescaled = torch.empty_like(boxes)
        for b, (height, width) in enumerate(sizes):
            rescaled[b, :, 0::2] = boxes[b, :, 0::2] * target_w / width
            rescaled[b, :, 1::2] = boxes[b, :, 1::2] * target_h / height
        return torch.where(boxes < 0, PAD_COORDINATE, rescaled)

    def post_process_masks(self, *args, **kwargs):
        """Delegates to [`EfficientSamImageProcessor.post_process_masks`]."""
        return self.image_processor.post_process_masks(*args, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Parsing: nested lists / arrays / tensors -> padded float64 arrays and a mask of the entries the user gave
# --------------------------------------------------------------------------------------------------------------------
def _check_return_tensors(return_tensors) -> None:
    if str(getattr(return_tensors, "value", return_tensors)) not in ("None", "pt", "np"):
        raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}.")


def _parse_sizes(original_sizes) -> list[tuple[int, int]]:
    if isinstance(original_sizes, (torch.Tensor, np.ndarray)):
        original_sizes = original_sizes.tolist()
    sizes = list(original_sizes)
    if sizes and isinstance(sizes[0], numbers.Number):
        sizes = [sizes]
    if not sizes or any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise ValueError(f"original_sizes must be a list of (height, width) pairs, got {original_sizes!r}.")
    return [(int(h), int(w)) for h, w in sizes]


def _to_nested(value, name: str):
    """Tensors/arrays -> nested lists, keeping lists/tuples; leaves are numbers."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        _check_numeric_dtype(value, name)
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_nested(v, name) for v in value]
    if isinstance(value, (numbers.Number, np.generic)) and not isinstance(value, (bool, np.bool_)):
        return value
    raise TypeError(f"{name} must contain only numbers (nested lists, numpy arrays or tensors), got {value!r}.")


def _check_numeric_dtype(value, name: str) -> None:
    if isinstance(value, torch.Tensor):
        bad = value.dtype == torch.bool or value.is_complex()
    else:
        bad = value.dtype.kind not in "iuf"
    if bad:
        raise TypeError(f"{name} must hold numbers, got dtype {value.dtype}.")


def _depth(value, name: str, path: str = "") -> int:
    """Nesting depth of a nested list; every branch must have the same depth and no list may be empty."""
    if not isinstance(value, list):
        return 0
    if len(value) == 0:
        raise ValueError(f"{name}{path} is empty: every image, query and point needs at least one entry.")
    depths = {_depth(v, name, f"{path}[{i}]") for i, v in enumerate(value)}
    if len(depths) != 1:
        raise ValueError(f"{name}{path} mixes numbers and lists: inconsistent nesting.")
    return 1 + depths.pop()


def _read(value, name: str):
    """-> (float64 array if the prompt is rectangular, else nested lists; depth). Checks types and emptiness."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        _check_numeric_dtype(value, name)
        array = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else value
        if 0 in array.shape:
            level = array.shape.index(0)
            raise ValueError(f"{name}{'[0]' * level} is empty: every image, query and point needs at least one entry.")
        return np.asarray(array, dtype=np.float64), array.ndim
    if isinstance(value, (list, tuple)):  # fast path: a rectangular list of numbers
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):  # ragged
            array = None
        if array is not None and array.dtype.kind in "iuf" and array.size > 0:
            leaves = np.asarray(value, dtype=object).reshape(-1)  # numpy turns True into 1: refuse bools here
            if not any(isinstance(leaf, (bool, np.bool_)) for leaf in leaves):
                return array.astype(np.float64), array.ndim
    nested = _to_nested(value, name)  # the slow path names what is wrong (types, empty lists, nesting)
    if not isinstance(nested, list):
        raise ValueError(f"{name} must be a nested list (or array/tensor), got {value!r}.")
    depth = _depth(nested, name)
    try:
        array = np.asarray(nested, dtype=np.float64)
    except ValueError:  # ragged
        return nested, depth
    return (array, depth) if array.ndim == depth else (nested, depth)


def _nested(value) -> list:
    return value.tolist() if isinstance(value, np.ndarray) else value


def _parse_points(input_points, input_labels, n_images: int):
    """-> (points (B, Q, N, 2) float64, labels (B, Q, N) int64, present (B, Q, N) bool), padded with (-1, -1) / -1
    where `present` is False. Rectangular input is handled as one array; ragged nested lists are padded."""
    points, depth = _read(input_points, "input_points")
    if depth not in (3, 4):
        raise ValueError(
            f"input_points must be nested as [image][query][point][x, y] (depth 4) or [image][point][x, y] (depth 3), "
            f"got depth {depth}."
        )
    if depth == 3:  # [image][point][xy]: one query per image, as SamProcessor
        points = points[:, None] if isinstance(points, np.ndarray) else [[image_points] for image_points in points]
    if len(points) != n_images:
        raise ValueError(f"input_points has {len(points)} prompt lists for {n_images} images; give one per image.")

    labels = None
    if input_labels is not None:
        labels, label_depth = _read(input_labels, "input_labels")
        if label_depth != depth - 1:
            raise ValueError(
                f"input_labels must be nested one level less than input_points ([image][query][point]); got depth "
                f"{label_depth} for input_points of depth {depth}."
            )
        if depth == 3:
            labels = labels[:, None] if isinstance(labels, np.ndarray) else [[image_labels] for image_labels in labels]
        if len(labels) != n_images:
            raise ValueError(f"input_labels has {len(labels)} label lists for {n_images} images; give one per image.")

    rectangular = isinstance(points, np.ndarray) and (labels is None or isinstance(labels, np.ndarray))
    if rectangular and points.shape[-1] == 2 and (labels is None or labels.shape == points.shape[:-1]):
        present = np.ones(points.shape[:-1], dtype=bool)
        raw_labels = labels
    else:
        points, raw_labels, present = _pad_ragged_points(_nested(points), None if labels is None else _nested(labels))

    padding_point = (points == PAD_COORDINATE).all(axis=-1)
    if raw_labels is None:
        labels = np.where(padding_point, PAD_LABEL, 1).astype(np.int64)
    else:
        invalid = present & ~np.isin(raw_labels, VALID_LABELS)
        if invalid.any():
            b, q = np.argwhere(invalid)[0][:2]
            raise ValueError(
                f"input_labels[{b}][{q}] = {raw_labels[b, q][present[b, q]].tolist()} contains labels outside "
                "{-1, 0, 1, 2, 3} (1 positive, 0 negative, -1 padding, 2 box top-left, 3 box bottom-right)."
            )
        labels = np.where(present, raw_labels, PAD_LABEL).astype(np.int64)
    return points, labels, present


def _pad_ragged_points(points: list, labels: list | None):
    n_queries = max(len(image_points) for image_points in points)
    n_points = max(len(query) for image_points in points for query in image_points)
    shape = (len(points), n_queries, n_points)
    out_points = np.full((*shape, 2), PAD_COORDINATE, dtype=np.float64)
    out_labels = None if labels is None else np.full(shape, PAD_LABEL, dtype=np.float64)
    present = np.zeros(shape, dtype=bool)
    for b, image_points in enumerate(points):
        if labels is not None and len(labels[b]) != len(image_points):
            raise ValueError(
                f"input_labels[{b}] has {len(labels[b])} queries but input_points[{b}] has {len(image_points)}."
            )
        for q, query_points in enumerate(image_points):
            array = np.asarray(query_points, dtype=np.float64)
            if array.ndim != 2 or array.shape[1] != 2:
                raise ValueError(f"input_points[{b}][{q}] must be a list of (x, y) pairs, got {query_points!r}.")
            if labels is not None:
                query_labels = np.asarray(labels[b][q], dtype=np.float64)
                if query_labels.shape != (len(array),):
                    raise ValueError(
                        f"input_labels[{b}][{q}] has shape {query_labels.shape} but input_points[{b}][{q}] has "
                        f"{len(array)} points: give one label per point."
                    )
                out_labels[b, q, : len(array)] = query_labels
            out_points[b, q, : len(array)] = array
            present[b, q, : len(array)] = True
    return out_points, out_labels, present


def _parse_boxes(input_boxes, n_images: int):
    """-> (boxes (B, Q, 4) float64, present (B, Q) bool), padded with (-1, -1, -1, -1) where `present` is False."""
    boxes, depth = _read(input_boxes, "input_boxes")
    if depth != 3:
        raise ValueError(f"input_boxes must be nested as [image][box][x0, y0, x1, y1] (depth 3), got depth {depth}.")
    if len(boxes) != n_images:
        raise ValueError(f"input_boxes has {len(boxes)} box lists for {n_images} images; give one per image.")
    if isinstance(boxes, np.ndarray) and boxes.shape[-1] == 4:
        return boxes, np.ones(boxes.shape[:-1], dtype=bool)
    boxes = _nested(boxes)
    n_queries = max(len(image_boxes) for image_boxes in boxes)
    out = np.full((len(boxes), n_queries, 4), PAD_COORDINATE, dtype=np.float64)
    present = np.zeros((len(boxes), n_queries), dtype=bool)
    for b, image_boxes in enumerate(boxes):
        for q, box in enumerate(image_boxes):
            array = np.asarray(box, dtype=np.float64)
            if array.shape != (4,):
                raise ValueError(f"input_boxes[{b}][{q}] must be (x0, y0, x1, y1), got {box!r}.")
            out[b, q] = array
            present[b, q] = True
    return out, present


# --------------------------------------------------------------------------------------------------------------------
# Validation (vectorised; the first offending entry is named)
# --------------------------------------------------------------------------------------------------------------------
def _image_sizes(sizes, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image heights and widths shaped to broadcast against (B, ...) arrays with `ndim` dimensions."""
    shape = (len(sizes),) + (1,) * (ndim - 1)
    heights = np.array([h for h, _ in sizes], dtype=np.float64).reshape(shape)
    widths = np.array([w for _, w in sizes], dtype=np.float64).reshape(shape)
    return heights, widths


def _validate_points(points: np.ndarray, labels: np.ndarray, present: np.ndarray, sizes) -> None:
    not_finite = present & ~np.isfinite(points).all(axis=-1)
    if not_finite.any():
        b, q, _ = np.argwhere(not_finite)[0]
        raise ValueError(f"input_points[{b}][{q}] contains NaN or infinite coordinates: {points[b, q].tolist()}.")
    bad_padding = present & (labels == PAD_LABEL) & ~(points == PAD_COORDINATE).all(axis=-1)
    if bad_padding.any():
        b, q, i = np.argwhere(bad_padding)[0]
        raise ValueError(
            f"input_points[{b}][{q}][{i}] = {points[b, q, i].tolist()} has label -1 (padding), which needs the point "
            "(-1, -1); for a negative (background) click use label 0."
        )
    heights, widths = _image_sizes(sizes, ndim=3)
    x, y = points[..., 0], points[..., 1]
    outside = present & (labels != PAD_LABEL) & ((x < 0) | (x > widths) | (y < 0) | (y > heights))
    if outside.any():
        b, q, i = np.argwhere(outside)[0]
        height, width = sizes[b]
        raise ValueError(
            f"input_points[{b}][{q}] has the point (x, y) = {tuple(points[b, q, i].tolist())} outside the image of "
            f"width {width} and height {height}: points must lie in [0, {width}] x [0, {height}] (original pixels); "
            "only padding points (-1, -1) with label -1 may lie outside."
        )


def _validate_boxes(boxes: np.ndarray, present: np.ndarray, sizes) -> None:
    def first(mask):
        b, q = np.argwhere(mask)[0]
        return f"input_boxes[{b}][{q}]", boxes[b, q].tolist(), sizes[b]

    not_finite = present & ~np.isfinite(boxes).all(axis=-1)
    if not_finite.any():
        where, box, _ = first(not_finite)
        raise ValueError(f"{where} contains NaN or infinite coordinates: {box}.")
    x0, y0, x1, y1 = (boxes[..., i] for i in range(4))
    unordered = present & ((x1 < x0) | (y1 < y0))
    if unordered.any():
        where, box, _ = first(unordered)
        raise ValueError(f"{where} = {box} must be (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1.")
    heights, widths = _image_sizes(sizes, ndim=2)
    outside = present & ((x0 < 0) | (y0 < 0) | (x1 > widths) | (y1 > heights))
    if outside.any():
        where, box, (height, width) = first(outside)
        raise ValueError(
            f"{where} = {box} lies outside the image of width {width} and height {height}: boxes must lie in "
            f"[0, {width}] x [0, {height}] (original pixels)."
        )


__all__ = ["EfficientSamProcessor"]
