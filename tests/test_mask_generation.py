"""Segment everything through `pipeline("mask-generation")`: structure, equality with the exhaustive path (transformers'
stock pipeline: decode every point, upsample all, then filter), chunking, crops, NMS, COCO output, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from transformers import pipeline
from transformers.pipelines import MaskGenerationPipeline

from efficientsam_hf import EfficientSamImageProcessor, EfficientSamProcessor
from efficientsam_hf.mask_generation import EfficientSamMaskGenerationPipeline

from conftest import COCO_DEV_DIR, REFERENCE_DIR, require_shared

ALL_PASS = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture(scope="module")
def image():
    return Image.open(require_shared(COCO_DEV_DIR / "images" / "000000000139.jpg"))


@pytest.fixture(scope="module")
def generator(tiny_model):
    return pipeline("mask-generation", model=tiny_model, image_processor=EfficientSamImageProcessor())


@pytest.fixture(scope="module")
def fast_result(generator, image):
    return generator(image, points_per_crop=6, points_per_batch=16, crops_nms_thresh=1.0, **ALL_PASS)


def same_masks(a, b):
    assert len(a["masks"]) == len(b["masks"]) > 0
    assert all(torch.equal(x, y) for x, y in zip(a["masks"], b["masks"]))
    torch.testing.assert_close(a["scores"], b["scores"], rtol=0, atol=0)


def test_pipeline_is_ours_and_returns_sam_structure(generator, fast_result, image):
    assert isinstance(generator, EfficientSamMaskGenerationPipeline)
    assert set(fast_result) >= {"masks", "scores"}
    assert all(m.dtype == torch.bool and m.shape == (image.height, image.width) for m in fast_result["masks"])
    assert fast_result["scores"].shape == (len(fast_result["masks"]),)
    assert torch.all(fast_result["scores"][:-1] >= fast_result["scores"][1:])  # best first


def test_fast_path_equals_exhaustive_path(tiny_model, fast_result, image):
    exhaustive = MaskGenerationPipeline(model=tiny_model, image_processor=EfficientSamImageProcessor())
    same_masks(
        fast_result, exhaustive(image, points_per_crop=6, points_per_batch=16, crops_nms_thresh=1.0, **ALL_PASS)
    )


def test_deterministic_and_independent_of_chunking(generator, fast_result, image):
    kwargs = dict(points_per_crop=6, crops_nms_thresh=1.0, **ALL_PASS)
    generator.upsample_chunk_size = 3
    try:
        same_masks(fast_result, generator(image, points_per_batch=16, **kwargs))
        generator.decoder_chunk_size = 5
        rechunked = generator(image, points_per_batch=36, **kwargs)
    finally:
        generator.decoder_chunk_size = EfficientSamMaskGenerationPipeline.decoder_chunk_size
        generator.upsample_chunk_size = EfficientSamMaskGenerationPipeline.upsample_chunk_size
    # Other decoder batch shapes change float32 rounding (~1e-10); the random model's logits hover around 0, so a
    # few pixels may flip and near-tied scores may swap places: compare scores and pixel agreement.
    assert len(rechunked["masks"]) == len(fast_result["masks"]) == 108
    torch.testing.assert_close(fast_result["scores"], rechunked["scores"], rtol=0, atol=1e-6)
    total = sum(m.sum() for m in fast_result["masks"]).item()
    assert abs(total - sum(m.sum() for m in rechunked["masks"]).item()) <= 1e-4 * total


def test_iou_threshold_filters_before_upsampling_with_same_result(tiny_model, generator, fast_result, image):
    threshold = float(fast_result["scores"].median())
    kwargs = dict(points_per_crop=6, points_per_batch=16, crops_nms_thresh=1.0, stability_score_thresh=0.0)
    fast = generator(image, pred_iou_thresh=threshold, **kwargs)
    assert 0 < len(fast["masks"]) < len(fast_result["masks"])
    assert torch.all(fast["scores"] > threshold)
    exhaustive = MaskGenerationPipeline(model=tiny_model, image_processor=EfficientSamImageProcessor())
    same_masks(fast, exhaustive(image, pred_iou_thresh=threshold, **kwargs))


def test_nms_threshold_controls_duplicates(generator, image):
    counts = [
        len(generator(image, points_per_crop=6, crops_nms_thresh=threshold, **ALL_PASS)["masks"])
        for threshold in (0.0, 0.5, 1.0)
    ]
    assert counts[0] <= counts[1] <= counts[2]
    assert counts[2] == 36 * 3  # IoU never exceeds 1: nothing suppressed, every point's 3 masks kept
    assert counts[0] < counts[2]


def test_crops_produce_full_size_masks(generator, image):
    result = generator(image, points_per_crop=4, crops_n_layers=1, **ALL_PASS)
    assert len(result["masks"]) > 0
    assert all(m.shape == (image.height, image.width) for m in result["masks"])


def test_coco_annotations(generator, image):
    result = generator(image, points_per_crop=4, output_coco_annotations=True, **ALL_PASS)
    annotations = result["annotations"]
    assert len(annotations) == len(result["masks"])
    for annotation, mask in zip(annotations, result["masks"]):
        decoded = mask_utils.decode(annotation["segmentation"]).astype(bool)
        assert np.array_equal(decoded, mask.numpy())
        assert annotation["area"] == int(mask.sum())
        assert len(annotation["bbox"]) == 4 and 0.0 <= annotation["predicted_iou"]
    assert "rle_mask" not in result


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"points_per_batch": 0}, "points_per_batch must be a positive integer"),
        ({"pred_iou_thresh": 1.5}, r"pred_iou_thresh must be in \[0, 1\]"),
        ({"stability_score_thresh": -0.1}, r"stability_score_thresh must be in \[0, 1\]"),
        ({"crops_nms_thresh": 2.0}, r"crops_nms_thresh must be in \[0, 1\]"),
        ({"crops_n_layers": -1}, "crops_n_layers must be a non-negative integer"),
    ],
)
def test_bad_arguments_raise(generator, image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generator(image, **kwargs)


@pytest.mark.slow
def test_pipeline_from_converted_folder(tmp_path, image):
    from efficientsam_hf.convert import convert_checkpoint

    folder = convert_checkpoint(
        require_shared(REFERENCE_DIR / "efficient_sam_vitt_synthetic_fp16.pt"), tmp_path / "ti"
    )
    assert isinstance(EfficientSamProcessor.from_pretrained(folder), EfficientSamProcessor)
    generator = pipeline("mask-generation", model=str(folder))
    assert isinstance(generator, EfficientSamMaskGenerationPipeline)
    result = generator(image, points_per_crop=4, **ALL_PASS)
    assert len(result["masks"]) > 0 and result["masks"][0].shape == (image.height, image.width)
