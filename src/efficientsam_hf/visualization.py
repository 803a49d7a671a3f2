"""Pictures of segmentations: coloured semi-transparent masks, their outlines, and the prompts (PIL + numpy only).

Masks are painted largest first so small objects stay visible on top of large ones; colours come from a fixed
palette so the same run gives the same picture.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# Distinct, saturated colours (tab20-like), cycled when there are more masks.
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194),
    (188, 189, 34), (23, 190, 207), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (219, 219, 141), (158, 218, 229), (174, 199, 232),
]  # fmt: skip
POSITIVE = (0, 220, 0)
NEGATIVE = (230, 0, 0)
BOX = (255, 215, 0)


def _as_mask_stack(masks, height: int, width: int) -> np.ndarray:
    """Any (N, H, W) / (H, W) bool-like array or tensor -> bool array (N, H, W), checked against the image size."""
    if hasattr(masks, "detach"):
        masks = masks.detach().cpu().numpy()
    array = np.asarray(masks).astype(bool)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (height, width):
        raise ValueError(f"masks must have shape (N, {height}, {width}) like the image, got {array.shape}.")
    return array


def mask_outline(mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    """Pixels of `mask` within `thickness` pixels of its border (4-neighbour erosion, repeated)."""
    inner = mask.copy()
    for _ in range(thickness):
        padded = np.pad(inner, 1, constant_values=False)
        inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def draw_segmentation(
    image: Image.Image,
    masks=None,
    points=None,
    labels=None,
    boxes=None,
    alpha: float = 0.45,
    outline_thickness: int | None = None,
) -> Image.Image:
    """
    The image with every mask overlaid in its own colour, outlined, and the prompts drawn on top.

    Args:
        image (`PIL.Image.Image`): the original image.
        masks: (N, H, W) or (H, W) boolean masks at the image size (array or tensor), or `None`.
        points: (P, 2) `(x, y)` in pixels; drawn as green (label 1) or red (label 0) discs with a white rim.
        labels: (P,) labels of `points` (default 1).
        boxes: (B, 4) `(x0, y0, x1, y1)` in pixels, drawn as yellow rectangles.
        alpha (`float`): opacity of the mask fill.
        outline_thickness (`int`, *optional*): outline width in pixels (default: about 0.3% of the image side).

    Returns:
        A new RGB `PIL.Image.Image`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    picture = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    height, width = picture.shape[:2]
    scale = max(height, width)
    thickness = outline_thickness or max(1, round(scale / 300))
    if masks is not None:
        stack = _as_mask_stack(masks, height, width)
        order = np.argsort(-stack.reshape(len(stack), -1).sum(axis=1), kind="stable")
        for rank, index in enumerate(order):
            mask = stack[index]
            if not mask.any():
                continue
            colour = np.array(PALETTE[rank % len(PALETTE)], dtype=np.float32)
            picture[mask] = (1 - alpha) * picture[mask] + alpha * colour
            picture[mask_outline(mask, thickness)] = colour
    result = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(result)
    line = max(2, round(scale / 250))
    for box in np.asarray(boxes if boxes is not None else [], dtype=np.float64).reshape(-1, 4):
        draw.rectangle([float(v) for v in box], outline=BOX, width=line)
    points = np.asarray(points if points is not None else [], dtype=np.float64).reshape(-1, 2)
    labels = np.ones(len(points)) if labels is None else np.asarray(labels).reshape(-1)
    radius = max(4, round(scale / 90))
    for (x, y), label in zip(points, labels):
        fill = POSITIVE if label == 1 else NEGATIVE
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill, outline=(255, 255, 255), width=line)
    return result


def masks_to_label_image(masks, height: int, width: int) -> np.ndarray:
    """(N, H, W) masks -> (H, W) labels: 0 background, i + 1 where mask i is; smaller masks win where they overlap."""
    stack = _as_mask_stack(masks, height, width)
    dtype = np.uint8 if len(stack) < 256 else np.uint16
    if len(stack) >= 65536:
        raise ValueError(f"a label image holds at most 65535 masks, got {len(stack)}.")
    labels = np.zeros((height, width), dtype=dtype)
    for index in np.argsort(-stack.reshape(len(stack), -1).sum(axis=1), kind="stable"):
        labels[stack[index]] = index + 1
    return labels


__all__ = ["draw_segmentation", "mask_outline", "masks_to_label_image"]
