"""EfficientSAM image processor: resize + normalize, `post_process_masks`, and the mask-generation helpers.

This file is copied into every `save_pretrained` folder for `trust_remote_code` users, so it imports only torch,
numpy, PIL and transformers. There is no torchvision here: resizing, non-maximum suppression, mask-to-box and RLE
are written with torch and numpy.

EfficientSAM's pre-processing is *not* SAM's:

| step       | SAM (`SamImageProcessor`)                           | EfficientSAM (this class)                           |
|------------|-----------------------------------------------------|-----------------------------------------------------|
| resize     | longest side to 1024, aspect ratio kept             | both sides stretched to 1024x1024, no aspect ratio  |
| pad        | bottom/right zero padding to 1024x1024              | none                                                |
| scale      | official SAM: 0-255 statistics (mean 123.675,       | `float() / 255` (uint8) or `/ 65535` (uint16), then |
|            | 116.28, 103.53; std 58.395, 57.12, 57.375);         | `(x - mean) / std` with ImageNet [0, 1] statistics  |
|            | transformers: `* 1/255` then the same on [0, 1]     | (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225)       |
| resample   | PIL / torchvision bilinear with antialiasing        | `torch.nn.functional.interpolate` bilinear,         |
|            |                                                     | `align_corners=False`, no antialiasing, on float32  |
| masks      | bilinear to 1024, crop the padding, bilinear again  | one bicubic upsampling straight to the original size|

Because each axis is stretched independently, a point `(x, y)` in original pixels lands on
`(x * 1024 / W, y * 1024 / H)` in the model frame (see `EfficientSamProcessor`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from itertools import product
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.processing_utils import ImagesKwargs

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_CHANNEL_COUNTS = (1, 3, 4)
_FLOAT_DTYPES_NP = (np.float16, np.float32, np.float64)
_FLOAT_DTYPES_PT = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class EfficientSamImageProcessorKwargs(ImagesKwargs, total=False):
    """Keyword arguments of `EfficientSamImageProcessor` (the subset of `ImagesKwargs` it uses)."""


class EfficientSamImageProcessor(BaseImageProcessor):
    r"""
    Image processor of EfficientSAM (Xiong et al., CVPR 2024), reproducing the official pre-processing exactly.

    Every image is converted to an RGB float32 tensor in [0, 1], **stretched** to `size` (1024x1024) with
    `torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)` and normalized with
    the ImageNet statistics as `(x - mean) / std`. This differs from [`SamImageProcessor`], which keeps the aspect
    ratio (longest side to 1024), pads the short side with zeros and resizes with antialiasing; the official
    EfficientSAM does none of that, and a port that did would not reproduce its masks.

    Accepted images (a single image, a list of images, or a 4-D batch array/tensor):

    - `PIL.Image.Image`: modes RGB, L, 1, P, RGBA, LA, RGBX, CMYK, YCbCr, LAB, HSV (8 bit), I;16 (16 bit) and F
      (32-bit float, must lie in [0, 1]). Mode I (32-bit integer) is refused with a `TypeError`.
    - `numpy.ndarray`: HxW, or 3-D with 1, 3 or 4 channels, read channels-last (HWC) unless only the first axis has
      1, 3 or 4 entries (then CHW). A 4-D array is a batch (BHWC, or BCHW by the same rule).
    - `torch.Tensor`: HxW, or 3-D read channels-first (CHW) unless only the last axis has 1, 3 or 4 entries (then
      HWC). A 4-D tensor is a batch (BCHW, or BHWC by the same rule).
    - `input_data_format="channels_first"` / `"channels_last"` overrides the layout rule.

    Value rules (identical for the three containers):

    - `uint8` is divided by 255, `uint16` (PIL mode I;16) by 65535.
    - Floating point images must already lie in [0, 1] (a `ValueError` names the range found); they are used as
      float32 without rescaling.
    - Any other dtype (bool, int8, int16, int32, int64, ...) raises a `TypeError`.
    - 1 channel (or a 2-D array, or PIL L/1) is repeated to 3 channels; a 4th channel (alpha, RGBA/LA) is dropped
      (not composited).

    Args:
        do_resize (`bool`, *optional*, defaults to `True`):
            Whether to stretch the images to `size`.
        size (`dict[str, int]`, *optional*, defaults to `{"height": 1024, "width": 1024}`):
            Model input size. EfficientSAM's encoder only works at 1024x1024.
        do_rescale (`bool`, *optional*, defaults to `True`):
            Whether to divide integer images by their maximum value (255 or 65535). If `False`, integer images are
            used as raw values (float32); float images are never rescaled.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to normalize with `image_mean` and `image_std`.
        image_mean (`list[float]`, *optional*, defaults to `[0.485, 0.456, 0.406]`):
            Per-channel mean, on the [0, 1] scale.
        image_std (`list[float]`, *optional*, defaults to `[0.229, 0.224, 0.225]`):
            Per-channel standard deviation, on the [0, 1] scale.
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = EfficientSamImageProcessorKwargs

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | int | None = None,
        do_rescale: bool = True,
        do_normalize: bool = True,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **kwargs,
    ):
        # Keys that transformers writes into saved configs but that mean nothing here.
        for key in ("_valid_kwargs_names", "_valid_processor_keys", "image_processor_type", "processor_class"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        self.do_resize = bool(do_resize)
        self.size = _size_dict(size if size is not None else 1024)
        self.do_rescale = bool(do_rescale)
        self.do_normalize = bool(do_normalize)
        self.image_mean = [float(v) for v in (image_mean if image_mean is not None else IMAGENET_MEAN)]
        self.image_std = [float(v) for v in (image_std if image_std is not None else IMAGENET_STD)]
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError(f"image_mean and image_std need 3 values, got {self.image_mean} and {self.image_std}.")
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"image_std must be positive, got {self.image_std}.")

    # ------------------------------------------------------------------------------------------------------------
    # Pre-processing
    # ------------------------------------------------------------------------------------------------------------
    def __call__(self, images, **kwargs) -> BatchFeature:
        """Pre-process an image or a batch of images; see [`~EfficientSamImageProcessor.preprocess`]."""
        return self.preprocess(images, **kwargs)

    def preprocess(
        self,
        images,
        do_resize: bool | None = None,
        size: dict[str, int] | int | None = None,
        do_rescale: bool | None = None,
        do_normalize: bool | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        input_data_format: str | None = None,
        return_tensors: str | None = "pt",
        device: str | torch.device | None = None,
    ) -> BatchFeature:
        """
        Pre-process images exactly like the official EfficientSAM.

        Args:
            images: one image or a list of images (PIL, numpy, torch; see the class docstring for the rules), or a
                4-D batch. Images of different sizes may be mixed.
            do_resize, size, do_rescale, do_normalize, image_mean, image_std: override the configured values.
            input_data_format (`str`, *optional*): `"channels_first"` or `"channels_last"` to override the layout
                rule for numpy arrays and tensors.
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"` for torch tensors, `"np"` for numpy
                arrays (`None` behaves like `"pt"`).
            device (`str` or `torch.device`, *optional*): where to run the resize and normalization.

        Returns:
            [`BatchFeature`] with `pixel_values` (B, 3, 1024, 1024) float32, `original_sizes` (B, 2) int64 as
            (height, width), and `reshaped_input_sizes` (B, 2) int64 (always the model input size).
        """
        do_resize = self.do_resize if do_resize is None else do_resize
        size = self.size if size is None else _size_dict(size)
        do_rescale = self.do_rescale if do_rescale is None else do_rescale
        do_normalize = self.do_normalize if do_normalize is None else do_normalize
        mean = self.image_mean if image_mean is None else [float(v) for v in image_mean]
        std = self.image_std if image_std is None else [float(v) for v in image_std]
        _check_return_tensors(return_tensors)

        image_list = _flatten_images(images, input_data_format)
        if not image_list:
            raise ValueError("images is empty: pass at least one image.")

        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        target = (size["height"], size["width"])

        pixel_values, original_sizes, reshaped_sizes = [], [], []
        for image in image_list:
            chw = to_rgb_chw_tensor(image, input_data_format)
            original_sizes.append(tuple(chw.shape[-2:]))
            if device is not None:
                chw = chw.to(device)
            x, owned = _rescale_to_float(chw, do_rescale)
            x = x.unsqueeze(0)
            if do_resize and tuple(x.shape[-2:]) != target:
                x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=False)
                owned = True
            if do_normalize:
                x = _normalize(x, mean_t, std_t, in_place=owned)
            reshaped_sizes.append(tuple(x.shape[-2:]))
            pixel_values.append(x)

        if len({tuple(p.shape) for p in pixel_values}) > 1:
            raise ValueError(
                "With do_resize=False all images must have the same size to be stacked; got sizes "
                f"{sorted(set(reshaped_sizes))}."
            )
        batch = pixel_values[0].contiguous() if len(pixel_values) == 1 else torch.cat(pixel_values)
        data = {
            "pixel_values": batch,
            "original_sizes": torch.tensor(original_sizes, dtype=torch.int64),
            "reshaped_input_sizes": torch.tensor(reshaped_sizes, dtype=torch.int64),
        }
        return BatchFeature(data=_convert_tensors(data, return_tensors))

    # ------------------------------------------------------------------------------------------------------------
    # Post-processing of prompted predictions
    # ------------------------------------------------------------------------------------------------------------
    def post_process_masks(
        self,
        masks,
        original_sizes,
        reshaped_input_sizes=None,
        mask_threshold: float = 0.0,
        binarize: bool = True,
    ) -> list[torch.Tensor]:
        """
        Upsample low-resolution mask logits to the original image sizes, as the official EfficientSAM does.

        There is no padding to remove (EfficientSAM stretches instead of padding), so each image's logits are
        upsampled in one step with `F.interpolate(mode="bicubic", align_corners=False)` straight to its original
        (height, width). This reproduces the official full-size logits bit for bit.

        Args:
            masks (`torch.Tensor` of shape (B, Q, M, h, w), or a list of B tensors/arrays of shape (Q, M, h, w)):
                Low-resolution logits (`pred_masks` of `EfficientSamModel`, h = w = 256).
            original_sizes (`torch.Tensor` or list of (height, width)): the `original_sizes` of the processor.
            reshaped_input_sizes (*optional*): accepted for API compatibility with `SamImageProcessor`; EfficientSAM
                has nothing to crop, so it is only checked for its length.
            mask_threshold (`float`, *optional*, defaults to 0.0): logits above it are foreground when binarizing.
            binarize (`bool`, *optional*, defaults to `True`): return boolean masks (`logits > mask_threshold`)
                instead of upsampled logits.

        Returns:
            `list[torch.Tensor]`: one tensor of shape (Q, M, height, width) per image (bool if `binarize`).
        """
        sizes = _sizes_list(original_sizes, "original_sizes")
        if reshaped_input_sizes is not None and len(_sizes_list(reshaped_input_sizes, "reshaped_input_sizes")) != len(
            sizes
        ):
            raise ValueError("reshaped_input_sizes and original_sizes must have one entry per image.")
        if isinstance(masks, (torch.Tensor, np.ndarray)) and masks.ndim == 4 and len(sizes) == 1:
            masks = [masks]
        if len(masks) != len(sizes):
            raise ValueError(f"masks has {len(masks)} images but original_sizes has {len(sizes)}.")
        output = []
        for mask, (height, width) in zip(masks, sizes):
            if isinstance(mask, np.ndarray):
                mask = torch.from_numpy(mask)
            if not isinstance(mask, torch.Tensor):
                raise TypeError(f"masks must be torch tensors or numpy arrays, got {type(mask).__name__}.")
            if mask.ndim != 4:
                raise ValueError(
                    f"each image's masks must be 4-D (queries, masks, h, w), got shape {tuple(mask.shape)}."
                )
            if mask.dtype not in (torch.float32, torch.float64):
                mask = mask.float()
            upsampled = F.interpolate(mask, (height, width), mode="bicubic", align_corners=False)
            output.append(upsampled > mask_threshold if binarize else upsampled)
        return output

    # ------------------------------------------------------------------------------------------------------------
    # Mask generation ("segment everything"), same signatures and returns as SamImageProcessor
    # ------------------------------------------------------------------------------------------------------------
    def generate_crop_boxes(
        self,
        image,
        target_size: int | dict[str, int],
        crop_n_layers: int = 0,
        overlap_ratio: float = 512 / 1500,
        points_per_crop: int | None = 32,
        crop_n_points_downscale_factor: int | None = 1,
        device: str | torch.device | None = None,
        return_tensors: str | None = "pt",
    ):
        """
        Crop boxes and point grids for automatic mask generation; layer `i` has `(2**i)**2` crops.

        Points are laid on a regular `n x n` grid inside every crop (n = points_per_crop //
        crop_n_points_downscale_factor**layer) and mapped to the model frame **per axis**, `x * target / crop_w`,
        `y * target / crop_h` (EfficientSAM stretches each crop to a square).

        Args:
            image: the full image (PIL, numpy or torch, as for `preprocess`).
            target_size (`int` or `dict`): the model input side (1024), or a size dict.
            crop_n_layers (`int`, *optional*, defaults to 0): number of extra crop layers.
            overlap_ratio (`float`, *optional*, defaults to 512/1500): overlap of neighbouring crops, as a fraction of
                the short image side in the first layer.
            points_per_crop (`int`, *optional*, defaults to 32): points per side of each crop's grid.
            crop_n_points_downscale_factor (`int`, *optional*, defaults to 1): per-layer division of the grid side.
            device (*optional*): device of the returned tensors (default CPU).
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"` or `"np"`.

        Returns:
            `crop_boxes` (n_crops, 4) float32 xyxy in original pixels; `points_per_crop` (1, n_points, n_crops, 2)
            float32 in the model frame; `cropped_images`, a list of n_crops CHW RGB tensors (uint8 for 8-bit input,
            float32 in [0, 1] otherwise) that `preprocess` accepts; `input_labels` (1, n_points, n_crops) int64 ones.
        """
        _check_return_tensors(return_tensors)
        if isinstance(image, (list, tuple)):
            raise ValueError("generate_crop_boxes takes a single image, not a list.")
        if points_per_crop is None or points_per_crop < 1:
            raise ValueError(f"points_per_crop must be a positive integer, got {points_per_crop}.")
        if crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}.")
        factor = 1 if crop_n_points_downscale_factor is None else crop_n_points_downscale_factor
        target_h, target_w = _target_hw(target_size)

        chw = to_rgb_chw_tensor(image)
        height, width = chw.shape[-2:]
        crop_boxes, layer_idxs = _generate_per_layer_crops(crop_n_layers, overlap_ratio, (height, width))
        n_per_side = [int(points_per_crop / (factor**layer)) for layer in range(crop_n_layers + 1)]
        if len(set(n_per_side)) > 1:
            raise ValueError(
                f"crop_n_points_downscale_factor={factor} gives the crop layers different grids ({n_per_side} points "
                "per side), which cannot be stacked into one points tensor; use crop_n_points_downscale_factor=1."
            )
        if n_per_side[0] < 1:
            raise ValueError("points_per_crop / crop_n_points_downscale_factor**crop_n_layers must be >= 1.")
        grid = _build_point_grid(n_per_side[0])  # (n*n, 2) in [0, 1]

        cropped_images, points = [], []
        for left, top, right, bottom in crop_boxes:
            cropped_images.append(chw[:, top:bottom, left:right])
            crop_w, crop_h = right - left, bottom - top
            # Crop pixels, then the model frame with the same ops as the processor (x * target / W).
            xy = grid * torch.tensor([crop_w, crop_h], dtype=torch.float32)
            points.append(torch.stack([xy[:, 0] * target_w / crop_w, xy[:, 1] * target_h / crop_h], dim=-1))

        device = torch.device("cpu") if device is None else device
        crop_boxes_t = torch.tensor(crop_boxes, dtype=torch.float32, device=device)
        points_t = torch.stack(points, dim=1).unsqueeze(0).to(device)  # (1, n_points, n_crops, 2)
        labels_t = torch.ones(points_t.shape[:-1], dtype=torch.int64, device=device)
        if return_tensors == "np":
            return (
                crop_boxes_t.cpu().numpy(),
                points_t.cpu().numpy(),
                [c.numpy() for c in cropped_images],
                labels_t.cpu().numpy(),
            )
        return crop_boxes_t, points_t, cropped_images, labels_t

    def filter_masks(
        self,
        masks,
        iou_scores,
        original_size,
        cropped_box_image,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        mask_threshold: float = 0,
        stability_score_offset: float = 1,
    ):
        """
        Keep the masks of one crop whose predicted IoU and stability score pass the thresholds and that do not touch
        the crop border (unless it is the image border), then paste them into the full image and RLE-encode them.

        Args:
            masks (`torch.Tensor` of shape (Q, M, crop_h, crop_w)): upsampled logits of one crop
                (`post_process_masks(..., binarize=False)[0]`).
            iou_scores (`torch.Tensor` of shape (Q, M)): predicted IoU.
            original_size (`(height, width)`): size of the full image.
            cropped_box_image (4 numbers): the crop box, xyxy in full-image pixels.
            pred_iou_thresh (`float`, *optional*, defaults to 0.88): minimum predicted IoU (0 disables).
            stability_score_thresh (`float`, *optional*, defaults to 0.95): minimum stability score (0 disables).
            mask_threshold (`float`, *optional*, defaults to 0): logit threshold of the masks.
            stability_score_offset (`float`, *optional*, defaults to 1): logit offset of the stability score.

        Returns:
            `(rle_masks, scores, boxes)`: a list of uncompressed RLE dicts (`{"size": [h, w], "counts": ...}`,
            column-major as in pycocotools; `counts` is a uint32 numpy array, see `mask_to_rle`), their IoU scores
            and their xyxy boxes (int64) in full-image pixels.
        """
        original_height, original_width = (int(v) for v in _as_list(original_size))
        masks = masks.flatten(0, 1)
        iou_scores = iou_scores.flatten(0, 1).to(masks.device)
        if masks.shape[0] != iou_scores.shape[0]:
            raise ValueError(f"masks ({masks.shape[0]}) and iou_scores ({iou_scores.shape[0]}) disagree in length.")

        keep = torch.ones(masks.shape[0], dtype=torch.bool, device=masks.device)
        if pred_iou_thresh > 0.0:
            keep &= iou_scores > pred_iou_thresh
        if stability_score_thresh > 0.0:
            keep &= compute_stability_score(masks, mask_threshold, stability_score_offset) > stability_score_thresh
        scores = iou_scores[keep]
        binary = masks[keep] > mask_threshold
        boxes = batched_mask_to_box(binary)

        crop_box = [int(v) for v in _as_list(cropped_box_image)]
        keep = ~_is_box_near_crop_edge(boxes, crop_box, [0, 0, original_width, original_height])
        scores, binary, boxes = scores[keep], binary[keep], boxes[keep]

        left, top = crop_box[0], crop_box[1]
        boxes = boxes + torch.tensor([left, top, left, top], device=boxes.device, dtype=boxes.dtype)
        binary = _pad_masks(binary, crop_box, original_height, original_width)
        return mask_to_rle(binary), scores, boxes

    def post_process_for_mask_generation(self, all_masks, all_scores, all_boxes, crops_nms_thresh: float):
        """
        Non-maximum suppression over the masks of all crops (pure torch), then RLE decoding.

        Args:
            all_masks (list of RLE dicts): from `filter_masks`.
            all_scores (`torch.Tensor` of shape (N,)): their IoU scores.
            all_boxes (`torch.Tensor` of shape (N, 4)): their xyxy boxes.
            crops_nms_thresh (`float`): box IoU above which the lower-scored mask is dropped.

        Returns:
            `(masks, iou_scores, rle_masks, boxes)` of the kept masks, best first; `masks` are bool tensors (h, w).
        """
        return _post_process_for_mask_generation(all_masks, all_scores, all_boxes, crops_nms_thresh)


# ----------------------------------------------------------------------------------------------------------------
# Input conversion
# ----------------------------------------------------------------------------------------------------------------
def _size_dict(size) -> dict[str, int]:
    if isinstance(size, int):
        return {"height": size, "width": size}
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return {"height": int(size["height"]), "width": int(size["width"])}
        if "longest_edge" in size:
            side = int(size["longest_edge"])
            return {"height": side, "width": side}
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return {"height": int(size[0]), "width": int(size[1])}
    raise ValueError(f"size must be an int, (height, width) or {{'height': h, 'width': w}}, got {size!r}.")


def _target_hw(target_size) -> tuple[int, int]:
    size = _size_dict(target_size)
    return size["height"], size["width"]


def _check_return_tensors(return_tensors) -> None:
    if return_tensors not in (None, "pt", "np") and str(getattr(return_tensors, "value", return_tensors)) not in (
        "pt",
        "np",
    ):
        raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}.")


def _convert_tensors(data: dict[str, Any], return_tensors) -> dict[str, Any]:
    if str(getattr(return_tensors, "value", return_tensors)) == "np":
        return {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in data.items()}
    return data


def _channel_layout(shape: Sequence[int], prefer_first: bool, input_data_format) -> str:
    """'first' or 'last' for a 3-D image shape, following the documented rule."""
    if input_data_format is not None:
        fmt = str(getattr(input_data_format, "value", input_data_format))
        if fmt not in ("channels_first", "channels_last"):
            raise ValueError(f"input_data_format must be 'channels_first' or 'channels_last', got {fmt!r}.")
        return "first" if fmt == "channels_first" else "last"
    first_ok, last_ok = shape[0] in _CHANNEL_COUNTS, shape[-1] in _CHANNEL_COUNTS
    if first_ok and (prefer_first or not last_ok):
        return "first"
    if last_ok:
        return "last"
    raise ValueError(
        f"Cannot find the channel axis of an image of shape {tuple(shape)}: expected 1, 3 or 4 channels first (CHW) "
        "or last (HWC), or pass input_data_format."
    )


def _flatten_images(images, input_data_format=None) -> list:
    """A flat list of single images; 4-D arrays/tensors are batches."""
    if isinstance(images, (PIL.Image.Image, np.ndarray, torch.Tensor)):
        images = [images]
    if not isinstance(images, (list, tuple)):
        raise TypeError(
            f"images must be a PIL image, numpy array, torch tensor or a list of them, got {type(images).__name__}."
        )
    flat = []
    for image in images:
        if isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim == 4:
            flat.extend(image[i] for i in range(image.shape[0]))
        elif isinstance(image, (list, tuple)):
            raise TypeError("images must be a flat list of images (one per prompt list), not a nested list.")
        else:
            flat.append(image)
    return flat


def _pil_to_numpy(image: PIL.Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("RGB", "L", "F") or mode.startswith("I;16"):
        pass
    elif mode == "1":
        image = image.convert("L")
    elif mode in ("RGBA", "RGBX", "RGBa"):
        image = image.convert("RGBA") if mode == "RGBa" else image
    elif mode in ("LA", "La"):
        image = image.convert("L")  # drops alpha, like RGBA -> RGB
    elif mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    elif mode == "I":
        raise TypeError(
            "PIL images of mode 'I' (32-bit integers) are not supported: convert to 'I;16' (16 bit, divided by "
            "65535), 'L'/'RGB' (8 bit) or pass a float array in [0, 1]."
        )
    else:
        raise TypeError(f"Unsupported PIL image mode {mode!r}.")
    array = np.asarray(image)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def to_rgb_chw_tensor(image, input_data_format=None) -> torch.Tensor:
    """
    Convert one image to a 3xHxW RGB tensor following the documented rules: uint8 stays uint8 (rescaled later, as
    the official code does); uint16 becomes float32 / 65535; float input is checked to lie in [0, 1] and becomes
    float32. Raises `TypeError` for other dtypes and `ValueError` for bad shapes or value ranges.
    """
    if isinstance(image, PIL.Image.Image):
        image = _pil_to_numpy(image)
        input_data_format = "channels_last"
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8:
            pass
        elif image.dtype == np.uint16:
            image = image.astype(np.float32) / np.float32(65535)
        elif image.dtype.type in _FLOAT_DTYPES_NP:
            _check_float_range(image)
            image = image.astype(np.float32, copy=False)
        else:
            raise TypeError(
                f"Unsupported image dtype {image.dtype}: use uint8 (0-255), uint16 (0-65535) or float in [0, 1]."
            )
        if any(stride < 0 for stride in image.strides):  # e.g. image[:, ::-1]; torch needs positive strides
            image = np.ascontiguousarray(image)
        with warnings.catch_warnings():  # read-only arrays (np.asarray(PIL image)) are only read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            tensor = torch.from_numpy(image)
        prefer_first = False
    elif isinstance(image, torch.Tensor):
        tensor = image.detach()
        if tensor.dtype == torch.uint8:
            pass
        elif tensor.dtype == torch.uint16:
            tensor = tensor.to(torch.float32) / 65535
        elif tensor.dtype in _FLOAT_DTYPES_PT:
            _check_float_range(tensor)
            tensor = tensor.to(torch.float32)
        else:
            raise TypeError(
                f"Unsupported image dtype {tensor.dtype}: use uint8 (0-255), uint16 (0-65535) or float in [0, 1]."
            )
        prefer_first = True
    else:
        raise TypeError(
            f"Unsupported image type {type(image).__name__}: use a PIL image, numpy array or torch tensor."
        )

    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
        layout = "first"
    elif tensor.ndim == 3:
        layout = _channel_layout(tensor.shape, prefer_first, input_data_format)
    else:
        raise ValueError(f"An image must be 2-D (HxW) or 3-D (CHW/HWC), got shape {tuple(tensor.shape)}.")
    if layout == "last":
        tensor = tensor.permute(2, 0, 1)  # a view, exactly as the official `permute(2, 0, 1)`
    channels = tensor.shape[0]
    if channels == 4:
        tensor = tensor[:3]
    elif channels == 1:
        tensor = tensor.expand(3, -1, -1)
    elif channels != 3:
        raise ValueError(f"An image needs 1, 3 or 4 channels, got {channels} (shape {tuple(image.shape)}).")
    if tensor.shape[1] < 1 or tensor.shape[2] < 1:
        raise ValueError(f"Empty image of shape {tuple(tensor.shape)}.")
    return tensor


def _check_float_range(image) -> None:
    if isinstance(image, torch.Tensor):
        if image.numel() == 0:
            return
        finite = bool(torch.isfinite(image).all())
        low, high = float(image.min()), float(image.max())
    else:
        if image.size == 0:
            return
        finite = bool(np.isfinite(image).all())
        low, high = float(image.min()), float(image.max())
    if not finite or low < 0.0 or high > 1.0:
        raise ValueError(
            f"Float images must have values in [0, 1], got min {low} and max {high}"
            + ("" if finite else " (with NaN or inf)")
            + ". Divide by 255 or pass a uint8 image."
        )


def _rescale_to_float(chw: torch.Tensor, do_rescale: bool) -> tuple[torch.Tensor, bool]:
    """float32 CHW in [0, 1]; the flag says whether the result is a new tensor (safe to modify in place).

    uint8 is divided exactly as the official `tensor.float() / 255`: a float32 cast then an IEEE float32 division per
    element. On CPU numpy does it (same bits as torch, and no intra-op thread hand-off, which costs more than the
    division itself on a busy machine); the result keeps the input's strides, so the resize sees the very layout the
    official code gives it.
    """
    if chw.dtype == torch.uint8:
        if not do_rescale:
            return chw.float(), True
        if chw.device.type == "cpu":
            array = chw.numpy().astype(np.float32)  # order "K": keeps the memory layout (HWC for numpy/PIL input)
            np.divide(array, np.float32(255), out=array)  # in place: several times faster than a casting divide
            return torch.from_numpy(array), True
        return torch.div(chw, 255), True
    if chw.dtype == torch.float32:
        return chw, False
    return chw.float(), True


def _normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, in_place: bool) -> torch.Tensor:
    """The official `(x - pixel_mean) / pixel_std` with (1, 3, 1, 1) float32 statistics: the same two IEEE float32
    operations per element, in place on CPU via numpy when `x` is ours (bit-identical to torch)."""
    if in_place and x.device.type == "cpu" and x.is_contiguous() and not x.requires_grad:
        array = x.numpy()
        np.subtract(array, mean.numpy(), out=array)
        np.divide(array, std.numpy(), out=array)
        return x
    return (x - mean.to(x.device)) / std.to(x.device)


# ----------------------------------------------------------------------------------------------------------------
# Post-processing helpers (pure torch / numpy)
# ----------------------------------------------------------------------------------------------------------------
def _as_list(value) -> list:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.tolist()
    return list(value)


def _sizes_list(sizes, name: str) -> list[tuple[int, int]]:
    sizes = _as_list(sizes)
    if sizes and not isinstance(sizes[0], (list, tuple)):
        sizes = [sizes]
    out = []
    for size in sizes:
        if len(size) != 2:
            raise ValueError(f"{name} must hold (height, width) pairs, got {size}.")
        out.append((int(size[0]), int(size[1])))
    return out


def compute_stability_score(masks: torch.Tensor, mask_threshold: float, stability_score_offset: float) -> torch.Tensor:
    """IoU between the masks thresholded at `threshold + offset` and `threshold - offset` (0 for an empty union)."""
    intersections = (masks > (mask_threshold + stability_score_offset)).flatten(-2).sum(-1, dtype=torch.int64)
    unions = (masks > (mask_threshold - stability_score_offset)).flatten(-2).sum(-1, dtype=torch.int64)
    return torch.where(unions > 0, intersections / unions.clamp(min=1), torch.zeros((), device=masks.device))


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """
    xyxy boxes (inclusive pixel indices, int64) around boolean masks of shape (..., H, W); (0, 0, 0, 0) for an empty
    mask, as in SAM.
    """
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.int64, device=masks.device)
    height, width = masks.shape[-2:]
    rows = masks.any(dim=-1)  # (..., H)
    cols = masks.any(dim=-2)  # (..., W)
    top = rows.to(torch.uint8).argmax(dim=-1)
    bottom = height - 1 - rows.flip(-1).to(torch.uint8).argmax(dim=-1)
    left = cols.to(torch.uint8).argmax(dim=-1)
    right = width - 1 - cols.flip(-1).to(torch.uint8).argmax(dim=-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1)
    return boxes * rows.any(dim=-1, keepdim=True)


def _is_box_near_crop_edge(boxes: torch.Tensor, crop_box: list[int], orig_box: list[int], atol: float = 20.0):
    """True for boxes touching the crop border where it is not the image border (SAM's rule)."""
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float32, device=boxes.device)
    offset = torch.tensor([crop_box[0], crop_box[1], crop_box[0], crop_box[1]], device=boxes.device)
    boxes = (boxes + offset).float()
    near_crop_edge = torch.isclose(boxes, crop[None, :], atol=atol, rtol=0)
    near_image_edge = torch.isclose(boxes, orig[None, :], atol=atol, rtol=0)
    return (near_crop_edge & ~near_image_edge).any(dim=-1)


def _pad_masks(masks: torch.Tensor, crop_box: list[int], orig_height: int, orig_width: int) -> torch.Tensor:
    left, top, right, bottom = crop_box
    if left == 0 and top == 0 and right == orig_width and bottom == orig_height:
        return masks
    pad_x, pad_y = orig_width - (right - left), orig_height - (bottom - top)
    return F.pad(masks, (left, pad_x - left, top, pad_y - top), value=0)


def _generate_per_layer_crops(crop_n_layers: int, overlap_ratio: float, original_size: tuple[int, int]):
    """Crop boxes (xyxy, ints) of every layer; layer 0 is the whole image (SAM's layout)."""
    im_height, im_width = (int(v) for v in original_size)
    short_side = min(im_height, im_width)
    crop_boxes, layer_idxs = [[0, 0, im_width, im_height]], [0]
    for i_layer in range(crop_n_layers):
        n_crops_per_side = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_crops_per_side))
        crop_width = int(math.ceil((overlap * (n_crops_per_side - 1) + im_width) / n_crops_per_side))
        crop_height = int(math.ceil((overlap * (n_crops_per_side - 1) + im_height) / n_crops_per_side))
        x0s = [int((crop_width - overlap) * i) for i in range(n_crops_per_side)]
        y0s = [int((crop_height - overlap) * i) for i in range(n_crops_per_side)]
        for left, top in product(x0s, y0s):
            crop_boxes.append([left, top, min(left + crop_width, im_width), min(top + crop_height, im_height)])
            layer_idxs.append(i_layer + 1)
    return crop_boxes, layer_idxs


def _build_point_grid(n_per_side: int) -> torch.Tensor:
    """(n*n, 2) points (x, y) evenly spaced in [0, 1]^2, x fastest."""
    offset = 1 / (2 * n_per_side)
    side = torch.linspace(offset, 1 - offset, n_per_side)
    ys, xs = torch.meshgrid(side, side, indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes, (N, M); area = (x1 - x0) * (y1 - y0) as in torchvision."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """
    Greedy non-maximum suppression per category `idxs`, in pure torch; returns kept indices by decreasing score,
    the same set as `torchvision.ops.batched_nms`.

    Vectorised: the (N, N) IoU matrix is computed once, then the greedy recurrence "box i survives iff no
    higher-scored surviving box of its category overlaps it by more than `iou_threshold`" is iterated as a whole
    vector until it stops changing (its fixed point is unique and equals the sequential greedy result; each pass
    settles at least one more box in score order, typically a handful of passes in all).
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes[order].float()
    idxs = idxs.to(boxes.device)[order]
    n = boxes.shape[0]
    overlaps = box_iou(boxes, boxes) > iou_threshold
    overlaps &= idxs[:, None] == idxs[None, :]
    overlaps = torch.triu(overlaps, diagonal=1)  # only higher-scored boxes (row) can suppress lower ones (column)
    overlaps_f = overlaps.to(torch.float32)
    keep = torch.ones(n, dtype=torch.bool, device=boxes.device)
    for _ in range(n):
        suppressed = (keep.to(torch.float32) @ overlaps_f) > 0
        new_keep = ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def mask_to_rle(masks: torch.Tensor) -> list[dict[str, Any]]:
    """
    Uncompressed RLE (pycocotools layout: column-major, counts start with the number of zeros) of boolean masks of
    shape (N, H, W); vectorised with numpy. `counts` is a uint32 numpy array (`.tolist()` it for JSON).
    """
    n, height, width = masks.shape
    if n == 0:
        return []
    flat = masks.transpose(1, 2).reshape(n, height * width).cpu().numpy().astype(bool, copy=False)
    changes = flat[:, 1:] != flat[:, :-1]
    rows, cols = np.nonzero(changes)
    splits = np.searchsorted(rows, np.arange(1, n))
    out = []
    total = height * width
    for i, change_idx in enumerate(np.split(cols + 1, splits)):
        bounds = np.concatenate(([0], change_idx, [total]))
        # A numpy array, not a list: transformers' pipeline walks lists element by element when it moves outputs.
        # uint32 (a mask has at most H*W < 2**32 runs): segment-everything holds every candidate's RLE at once.
        counts = np.diff(bounds).astype(np.uint32)
        if flat[i, 0]:
            counts = np.concatenate((np.zeros(1, np.uint32), counts))
        out.append({"size": [height, width], "counts": counts})
    return out


def rle_to_mask(rle: dict[str, Any]) -> torch.Tensor:
    """Decode an uncompressed RLE (see `mask_to_rle`) into a boolean (H, W) tensor; vectorised with numpy."""
    height, width = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = (np.arange(len(counts)) % 2).astype(bool)
    flat = np.repeat(values, counts)
    if flat.size != height * width:
        raise ValueError(f"RLE counts sum to {flat.size}, expected {height * width}.")
    return torch.from_numpy(np.ascontiguousarray(flat.reshape(width, height).T))


def _post_process_for_mask_generation(rle_masks, iou_scores, mask_boxes, amg_crops_nms_thresh: float = 0.7):
    keep = batched_nms(
        mask_boxes.float(),
        iou_scores,
        torch.zeros(mask_boxes.shape[0], dtype=torch.int64, device=mask_boxes.device),
        amg_crops_nms_thresh,
    )
    keep_list = keep.tolist()
    rle_masks = [rle_masks[i] for i in keep_list]
    masks = [rle_to_mask(rle) for rle in rle_masks]
    return masks, iou_scores[keep], rle_masks, mask_boxes[keep]


__all__ = ["EfficientSamImageProcessor"]
