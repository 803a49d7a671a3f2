"""EfficientSamImageProcessor: input rules, official pre-processing, post_process_masks and mask-generation helpers.

Exact parity with the official pre-processing on the reference images is in test_processor_parity.py; here the
rules are checked on small synthetic images against the official formula written out.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoImageProcessor
from transformers.models.sam import image_processing_pil_sam as sam_pil

from efficientsam_hf.image_processing_efficientsam import (
    EfficientSamImageProcessor,
    batched_mask_to_box,
    batched_nms,
    box_iou,
    compute_stability_score,
    mask_to_rle,
    rle_to_mask,
)

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def official(image_hwc_uint8: np.ndarray) -> torch.Tensor:
    """The official EfficientSAM pre-processing (ToTensor, then the model's own resize + normalize)."""
    x = torch.from_numpy(np.ascontiguousarray(image_hwc_uint8)).permute(2, 0, 1).float()[None] / 255
    if x.shape[-2:] != (1024, 1024):
        x = F.interpolate(x, (1024, 1024), mode="bilinear")
    return (x - MEAN) / STD


@pytest.fixture(scope="module")
def processor() -> EfficientSamImageProcessor:
    return EfficientSamImageProcessor()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.random.RandomState(0).randint(0, 256, size=(37, 53, 3), dtype=np.uint8)


def pixels(processor, image, **kwargs) -> torch.Tensor:
    return processor(image, **kwargs)["pixel_values"]


# ---------------------------------------------------------------------------------------------------------------------
# Pre-processing
# ---------------------------------------------------------------------------------------------------------------------
def test_outputs_match_official_formula(processor, rgb):
    out = processor(rgb)
    assert set(out.keys()) == {"pixel_values", "original_sizes", "reshaped_input_sizes"}
    assert out["pixel_values"].shape == (1, 3, 1024, 1024) and out["pixel_values"].dtype == torch.float32
    assert out["original_sizes"].tolist() == [[37, 53]] and out["original_sizes"].dtype == torch.int64
    assert out["reshaped_input_sizes"].tolist() == [[1024, 1024]]
    assert torch.equal(out["pixel_values"], official(rgb))


def test_containers_agree_exactly(processor, rgb):
    expected = official(rgb)
    chw = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    for image in (Image.fromarray(rgb), rgb, chw, torch.from_numpy(rgb), rgb.astype(np.float32) / 255):
        assert torch.equal(pixels(processor, image), expected), type(image)
    # float input in [0, 1] is used as is: uint8 / 255 as float32 gives the very same tensor
    assert torch.equal(pixels(processor, chw.float() / 255), expected)


def test_batches_of_different_sizes(processor, rgb):
    other = np.random.RandomState(1).randint(0, 256, size=(64, 31, 3), dtype=np.uint8)
    out = processor([rgb, Image.fromarray(other)])
    assert out["pixel_values"].shape == (2, 3, 1024, 1024)
    assert out["original_sizes"].tolist() == [[37, 53], [64, 31]]
    assert torch.equal(out["pixel_values"][1:], official(other))
    # a 4-D array is a batch (BHWC for numpy, BCHW for torch)
    batch = np.stack([rgb, rgb[::-1]])
    np_out = processor(batch)["pixel_values"]
    assert np_out.shape[0] == 2 and torch.equal(np_out[1:], official(rgb[::-1]))
    assert torch.equal(processor(torch.from_numpy(batch).permute(0, 3, 1, 2))["pixel_values"], np_out)


def test_negative_strides_and_readonly_arrays(processor, rgb):
    flipped = rgb[:, ::-1]
    assert torch.equal(pixels(processor, flipped), official(flipped.copy()))
    readonly = rgb.copy()
    readonly.setflags(write=False)
    assert torch.equal(pixels(processor, readonly), official(rgb))


def test_grayscale_is_repeated(processor, rgb):
    gray = rgb[..., 0]
    expected = official(np.repeat(gray[..., None], 3, axis=-1))
    for image in (gray, gray[..., None], gray[None], Image.fromarray(gray), torch.from_numpy(gray)[None]):
        assert torch.equal(pixels(processor, image), expected), getattr(image, "shape", image)
    binary = Image.fromarray(gray > 128)  # mode "1"
    assert binary.mode == "1"
    assert torch.equal(
        pixels(processor, binary), official(np.repeat(((gray > 128) * 255).astype(np.uint8)[..., None], 3, -1))
    )


def test_alpha_is_dropped(processor, rgb):
    alpha = np.full(rgb.shape[:2] + (1,), 7, dtype=np.uint8)
    rgba = np.concatenate([rgb, alpha], axis=-1)
    expected = official(rgb)
    for image in (rgba, Image.fromarray(rgba, mode="RGBA"), torch.from_numpy(rgba).permute(2, 0, 1)):
        assert torch.equal(pixels(processor, image), expected)
    la = Image.fromarray(rgba[..., [0, 3]], mode="LA")
    assert torch.equal(pixels(processor, la), official(np.repeat(rgb[..., :1], 3, -1)))


def test_palette_image_is_converted(processor, rgb):
    palette = Image.fromarray(rgb).convert("P")
    assert torch.equal(pixels(processor, palette), official(np.asarray(palette.convert("RGB"))))


def test_sixteen_bit_is_divided_by_65535(processor):
    data = np.random.RandomState(2).randint(0, 65536, size=(20, 30, 3)).astype(np.uint16)
    expected = pixels(processor, data.astype(np.float32) / np.float32(65535))
    assert torch.equal(pixels(processor, data), expected)
    gray16 = data[..., 0]
    pil16 = Image.fromarray(gray16)  # mode I;16
    assert pil16.mode.startswith("I;16")
    gray_expected = pixels(processor, np.repeat(gray16[..., None], 3, -1).astype(np.float32) / np.float32(65535))
    assert torch.equal(pixels(processor, pil16), gray_expected)
    assert torch.equal(
        pixels(processor, torch.from_numpy(data.astype(np.int32)).to(torch.uint16).permute(2, 0, 1)), expected
    )


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), float("inf")])
def test_float_images_must_be_in_unit_range(processor, bad):
    image = np.zeros((8, 8, 3), dtype=np.float32)
    image[0, 0, 0] = bad
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        processor(image)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        processor(torch.from_numpy(image).permute(2, 0, 1))


def test_float_mode_pil_image(processor):
    data = np.random.RandomState(3).rand(10, 12).astype(np.float32)
    assert torch.equal(pixels(processor, Image.fromarray(data, mode="F")), pixels(processor, data))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        processor(Image.fromarray(data * 255, mode="F"))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32, bool])
def test_other_dtypes_are_refused(processor, dtype):
    with pytest.raises(TypeError, match="dtype"):
        processor(np.zeros((8, 8, 3), dtype=dtype))


def test_other_tensor_dtypes_and_types_are_refused(processor):
    for dtype in (torch.int32, torch.int64, torch.bool):
        with pytest.raises(TypeError, match="dtype"):
            processor(torch.zeros(3, 8, 8, dtype=dtype))
    with pytest.raises(TypeError, match="mode 'I'"):
        processor(Image.fromarray(np.zeros((8, 8), dtype=np.int32), mode="I"))
    with pytest.raises(TypeError):
        processor("image.png")
    with pytest.raises(TypeError):
        processor([[np.zeros((8, 8, 3), dtype=np.uint8)]])


def test_layout_rule_and_override(processor, rgb):
    # numpy is read HWC, torch CHW; when only the other end has 1/3/4 entries, that layout is used.
    square = np.random.RandomState(4).randint(0, 256, size=(3, 5, 3), dtype=np.uint8)
    as_hwc = official(square)
    as_chw = official(np.ascontiguousarray(square.transpose(1, 2, 0)))
    assert torch.equal(pixels(processor, square), as_hwc)
    assert torch.equal(pixels(processor, torch.from_numpy(square)), as_chw)
    assert torch.equal(pixels(processor, square, input_data_format="channels_first"), as_chw)
    assert torch.equal(pixels(processor, torch.from_numpy(square), input_data_format="channels_last"), as_hwc)
    with pytest.raises(ValueError, match="channel"):
        processor(np.zeros((8, 8, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="input_data_format"):
        processor(rgb, input_data_format="nchw")


@pytest.mark.parametrize("shape", [(8,), (1, 1, 8, 8, 3), (0, 8, 3), (8, 8, 2)])
def test_bad_shapes(processor, shape):
    with pytest.raises(ValueError):
        processor(np.zeros(shape, dtype=np.uint8))


def test_empty_input(processor):
    with pytest.raises(ValueError, match="empty"):
        processor([])


def test_options_and_numpy_output(processor, rgb):
    raw = processor(rgb, do_normalize=False)["pixel_values"]
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255
    assert torch.equal(raw, F.interpolate(x, (1024, 1024), mode="bilinear"))
    same_size = processor([rgb, rgb], do_resize=False)
    assert same_size["pixel_values"].shape == (2, 3, 37, 53)
    assert same_size["reshaped_input_sizes"].tolist() == [[37, 53], [37, 53]]
    with pytest.raises(ValueError, match="same size"):
        processor([rgb, rgb[:10]], do_resize=False)
    out = processor(rgb, return_tensors="np")
    assert isinstance(out["pixel_values"], np.ndarray) and out["pixel_values"].dtype == np.float32
    assert np.array_equal(out["pixel_values"], official(rgb).numpy())
    with pytest.raises(ValueError, match="return_tensors"):
        processor(rgb, return_tensors="tf")
    small = processor(rgb, size={"height": 64, "width": 32})["pixel_values"]
    assert small.shape == (1, 3, 64, 32)


def test_input_is_never_modified(processor):
    image = torch.rand(3, 1024, 1024)  # no resize needed: normalization must not run in place on the input
    before = image.clone()
    out = pixels(processor, image)
    assert torch.equal(image, before)
    assert torch.equal(out, (before[None] - MEAN) / STD)


def test_config_round_trip(tmp_path):
    processor = EfficientSamImageProcessor(do_normalize=False, image_mean=[0.5, 0.5, 0.5])
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "EfficientSamImageProcessor"
    assert saved["size"] == {"height": 1024, "width": 1024}
    assert saved["do_normalize"] is False and saved["image_mean"] == [0.5, 0.5, 0.5]
    assert saved["image_std"] == [0.229, 0.224, 0.225] and saved["do_resize"] is True
    for loaded in (EfficientSamImageProcessor.from_pretrained(tmp_path), AutoImageProcessor.from_pretrained(tmp_path)):
        assert isinstance(loaded, EfficientSamImageProcessor)
        assert loaded.to_dict() == processor.to_dict()
    override = EfficientSamImageProcessor.from_pretrained(tmp_path, do_normalize=True)
    assert override.do_normalize is True


def test_invalid_config():
    with pytest.raises(ValueError):
        EfficientSamImageProcessor(image_mean=[0.5, 0.5])
    with pytest.raises(ValueError):
        EfficientSamImageProcessor(image_std=[0.2, 0.0, 0.2])
    with pytest.raises(ValueError):
        EfficientSamImageProcessor(size="large")


# ---------------------------------------------------------------------------------------------------------------------
# post_process_masks
# ---------------------------------------------------------------------------------------------------------------------
def test_post_process_masks_is_one_bicubic_upsampling(processor):
    logits = torch.randn(2, 3, 3, 256, 256)
    sizes = torch.tensor([[37, 53], [300, 451]])
    out = processor.post_process_masks(logits, sizes, torch.tensor([[1024, 1024]] * 2), binarize=False)
    assert isinstance(out, list) and len(out) == 2
    for i, (h, w) in enumerate(sizes.tolist()):
        expected = F.interpolate(logits[i], (h, w), mode="bicubic", align_corners=False)
        assert out[i].shape == (3, 3, h, w) and torch.equal(out[i], expected)
    binary = processor.post_process_masks(logits, sizes)
    assert binary[1].dtype == torch.bool and torch.equal(binary[1], out[1] > 0)
    shifted = processor.post_process_masks(logits, sizes, mask_threshold=0.5)
    assert torch.equal(shifted[0], out[0] > 0.5)


def test_post_process_masks_inputs(processor):
    logits = torch.randn(1, 2, 3, 256, 256)
    expected = processor.post_process_masks(logits, [[20, 30]])
    assert torch.equal(processor.post_process_masks([logits[0].numpy()], [(20, 30)])[0], expected[0])
    assert torch.equal(processor.post_process_masks(logits[0], [20, 30])[0], expected[0])  # one image, 4-D
    half = processor.post_process_masks(logits.half(), [[20, 30]], binarize=False)[0]
    assert half.dtype == torch.float32
    with pytest.raises(ValueError, match="original_sizes"):
        processor.post_process_masks(logits, [[20, 30], [5, 5]])
    with pytest.raises(ValueError, match="4-D"):
        processor.post_process_masks([logits[0, 0]], [[20, 30]])
    with pytest.raises(TypeError):
        processor.post_process_masks([[1.0]], [[20, 30]])


# ---------------------------------------------------------------------------------------------------------------------
# Mask generation helpers, against SamImageProcessorPil (pure numpy/torch, no torchvision) and naive references
# ---------------------------------------------------------------------------------------------------------------------
def test_generate_crop_boxes_single_layer(processor, rgb):
    boxes, points, crops, labels = processor.generate_crop_boxes(Image.fromarray(rgb), 1024, points_per_crop=4)
    assert boxes.tolist() == [[0.0, 0.0, 53.0, 37.0]] and boxes.dtype == torch.float32
    assert points.shape == (1, 16, 1, 2) and labels.shape == (1, 16, 1)
    assert labels.dtype == torch.int64 and bool((labels == 1).all())
    assert len(crops) == 1 and crops[0].shape == (3, 37, 53) and crops[0].dtype == torch.uint8
    # per-axis mapping: grid fractions (1/8, 3/8, 5/8, 7/8) of each side land on the same fractions of 1024
    fractions = torch.tensor([1, 3, 5, 7], dtype=torch.float32) / 8
    assert torch.allclose(points[0, :4, 0, 0], fractions * 1024, atol=1e-3)
    assert torch.allclose(points[0, ::4, 0, 1], fractions * 1024, atol=1e-3)
    # the crops feed straight back into the processor
    assert torch.equal(processor(crops)["pixel_values"], official(rgb))


def test_generate_crop_boxes_layers_match_sam(processor):
    image = np.random.RandomState(5).randint(0, 256, size=(300, 451, 3), dtype=np.uint8)
    boxes, points, crops, labels = processor.generate_crop_boxes(image, 1024, crop_n_layers=2, points_per_crop=8)
    sam_boxes, _ = sam_pil._generate_per_layer_crops(2, 512 / 1500, (300, 451))
    assert boxes.tolist() == [[float(v) for v in box] for box in sam_boxes]
    assert points.shape == (1, 64, 21, 2) and labels.shape == (1, 64, 21) and len(crops) == 21
    for c, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
        assert torch.equal(crops[c], torch.from_numpy(image).permute(2, 0, 1)[:, y0:y1, x0:x1])
        # crop pixel coordinates (grid * crop size), then x * 1024 / w, y * 1024 / h in float32
        grid = sam_pil._build_point_grid(8).astype(np.float32)
        xy = torch.from_numpy(grid) * torch.tensor([x1 - x0, y1 - y0], dtype=torch.float32)
        assert torch.equal(points[0, :, c, 0], xy[:, 0] * 1024 / (x1 - x0))
        assert torch.equal(points[0, :, c, 1], xy[:, 1] * 1024 / (y1 - y0))
    np_out = processor.generate_crop_boxes(image, 1024, crop_n_layers=1, points_per_crop=4, return_tensors="np")
    assert isinstance(np_out[0], np.ndarray) and np_out[1].shape == (1, 16, 5, 2)


def test_generate_crop_boxes_errors(processor, rgb):
    with pytest.raises(ValueError, match="downscale"):
        processor.generate_crop_boxes(rgb, 1024, crop_n_layers=1, crop_n_points_downscale_factor=2)
    with pytest.raises(ValueError, match="single image"):
        processor.generate_crop_boxes([rgb], 1024)
    with pytest.raises(ValueError, match="points_per_crop"):
        processor.generate_crop_boxes(rgb, 1024, points_per_crop=0)


def as_lists(rles: list[dict]) -> list[dict]:
    """RLEs with `counts` as plain lists (ours are uint32 numpy arrays, SAM's lists)."""
    return [{"size": list(rle["size"]), "counts": [int(c) for c in rle["counts"]]} for rle in rles]


def _random_logit_masks(seed: int, n: int = 6, height: int = 40, width: int = 50) -> torch.Tensor:
    """Smooth blobs as logits, some touching the borders, one empty."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    centres = torch.rand(n, 2, generator=gen) * torch.tensor([width, height])
    radius = 3 + torch.rand(n, 1, 1, generator=gen) * 15
    dist = ((xs - centres[:, 0, None, None]) ** 2 + (ys - centres[:, 1, None, None]) ** 2).sqrt()
    logits = (radius - dist) / 2
    logits[0] = -5.0  # empty mask
    return logits


@pytest.mark.parametrize("seed", range(4))
def test_filter_masks_matches_sam(processor, seed):
    masks = _random_logit_masks(seed, n=6).reshape(2, 3, 40, 50)
    scores = torch.rand(2, 3, generator=torch.Generator().manual_seed(seed)) * 0.4 + 0.7
    crop_box = [10, 20, 60, 60] if seed % 2 else [0, 0, 50, 40]
    full_size = (80, 90) if seed % 2 else (40, 50)
    sam = sam_pil.SamImageProcessorPil()
    for thresholds in ((0.0, 0.0), (0.88, 0.0), (0.0, 0.9), (0.8, 0.8)):
        ours = processor.filter_masks(masks, scores, full_size, crop_box, *thresholds)
        ref = sam.filter_masks(masks, scores, full_size, crop_box, *thresholds)
        assert as_lists(ours[0]) == ref[0]
        assert torch.equal(ours[1], ref[1])
        assert torch.equal(ours[2], ref[2].to(ours[2].dtype))


def test_stability_box_and_rle_helpers_match_sam():
    logits = _random_logit_masks(7, n=8)
    assert torch.allclose(
        compute_stability_score(logits, 0.0, 1.0)[1:], sam_pil._compute_stability_score(logits, 0.0, 1.0)[1:]
    )
    assert compute_stability_score(torch.full((1, 4, 4), -9.0), 0.0, 1.0).tolist() == [0.0]  # empty union -> 0
    binary = logits > 0
    assert torch.equal(batched_mask_to_box(binary), sam_pil._batched_mask_to_box(binary).to(torch.int64))
    assert batched_mask_to_box(binary)[0].tolist() == [0, 0, 0, 0]
    rles = mask_to_rle(binary)
    assert all(isinstance(r["counts"], np.ndarray) and r["counts"].dtype == np.uint32 for r in rles)
    assert as_lists(rles) == sam_pil._mask_to_rle(binary)
    for rle, mask in zip(rles, binary):
        assert torch.equal(rle_to_mask(rle), mask)
    full = torch.ones(1, 3, 4, dtype=torch.bool)
    assert as_lists(mask_to_rle(full)) == [{"size": [3, 4], "counts": [0, 12]}]
    assert torch.equal(rle_to_mask(mask_to_rle(full)[0]), full[0])
    assert mask_to_rle(torch.zeros(0, 3, 4, dtype=torch.bool)) == []


def naive_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, threshold: float) -> list[int]:
    """Sequential greedy NMS, the definition torchvision implements."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    iou = box_iou(boxes, boxes)
    keep = []
    for i in order:
        if all(not (idxs[i] == idxs[j] and iou[i, j] > threshold) for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(6))
def test_batched_nms_equals_greedy_definition(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 60
    xy = torch.rand(n, 2, generator=gen) * 100
    wh = torch.rand(n, 2, generator=gen) * 40 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[5] = boxes[4]  # exact duplicates
    scores = torch.rand(n, generator=gen)
    scores[7] = scores[8]  # a tie
    idxs = torch.randint(0, 3, (n,), generator=gen)
    for threshold in (0.1, 0.5, 0.7):
        assert batched_nms(boxes, scores, idxs, threshold).tolist() == naive_nms(boxes, scores, idxs, threshold)
        single = torch.zeros(n, dtype=torch.int64)
        assert batched_nms(boxes, scores, single, threshold).tolist() == naive_nms(boxes, scores, single, threshold)
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).tolist() == []


def test_nms_chain_needs_many_passes():
    # each box overlaps only the next: the greedy answer alternates keep/drop along the chain
    n = 25
    x0 = torch.arange(n, dtype=torch.float32) * 6
    boxes = torch.stack([x0, torch.zeros(n), x0 + 10, torch.ones(n) * 10], dim=1)
    scores = torch.linspace(1, 0.5, n)
    idxs = torch.zeros(n, dtype=torch.int64)
    # IoU of neighbours = 40 / 160 = 0.25
    assert batched_nms(boxes, scores, idxs, 0.2).tolist() == naive_nms(boxes, scores, idxs, 0.2)
    assert batched_nms(boxes, scores, idxs, 0.2).tolist() == list(range(0, n, 2))
    assert batched_nms(boxes, scores, idxs, 0.3).tolist() == list(range(n))


def test_post_process_for_mask_generation(processor):
    masks = _random_logit_masks(11, n=5) > 0
    masks[2] = masks[1]  # a duplicate, to be suppressed
    rles = mask_to_rle(masks)
    scores = torch.tensor([0.5, 0.9, 0.8, 0.7, 0.6])
    boxes = batched_mask_to_box(masks)
    out_masks, out_scores, out_rles, out_boxes = processor.post_process_for_mask_generation(rles, scores, boxes, 0.7)
    kept = naive_nms(boxes.float(), scores, torch.zeros(5, dtype=torch.int64), 0.7)
    assert 2 not in kept and out_scores.tolist() == scores[kept].tolist()
    assert as_lists(out_rles) == as_lists([rles[i] for i in kept])
    assert all(torch.equal(m, masks[i]) for m, i in zip(out_masks, kept))
    assert torch.equal(out_boxes, boxes[kept])


def test_stock_mask_generation_pipeline_runs(tiny_model, processor):
    """transformers' own `MaskGenerationPipeline` (not the package's subclass) drives these helpers end to end."""
    from transformers.pipelines import MaskGenerationPipeline

    generator = MaskGenerationPipeline(model=tiny_model, image_processor=processor, device="cpu")
    assert type(generator) is MaskGenerationPipeline
    image = Image.fromarray(np.random.RandomState(6).randint(0, 256, size=(48, 64, 3), dtype=np.uint8))
    out = generator(
        image,
        points_per_batch=64,
        points_per_crop=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        output_rle_mask=True,
        output_bboxes_mask=True,
    )
    assert len(out["masks"]) >= 1 and len(out["scores"]) == len(out["masks"]) == len(out["rle_mask"])
    assert all(m.shape == (48, 64) and m.dtype == torch.bool for m in out["masks"])
    assert all(torch.equal(rle_to_mask(r), m) for r, m in zip(out["rle_mask"], out["masks"]))
    assert torch.equal(out["bounding_boxes"], batched_mask_to_box(torch.stack(out["masks"])))
