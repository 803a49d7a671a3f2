"""The converted synthetic checkpoints reproduce the official implementation's outputs (../shared/reference).

Tolerances (the reference README's): image embeddings, low-res logits and IoU max abs error <= 1e-4, sparse prompt
embeddings <= 1e-5, fp32 on CPU. Decoder checks start from the reference image embeddings so that encoder and
decoder errors are measured separately; one chained check runs our embeddings through our decoder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

EMBED_TOL, LOGIT_TOL, IOU_TOL, SPARSE_TOL = 1e-4, 1e-4, 1e-4, 1e-5
TAGS = ("astronaut", "coffee", "chelsea")
CASES = ("point", "posneg", "box", "multi")
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def official_pixel_values(image: np.ndarray) -> torch.Tensor:
    """The official model's own preprocessing (resize inside the model), written out for model-only tests; the
    processor's equality with it is tested in test_processor_parity.py."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None] / 255
    return (F.interpolate(x, (1024, 1024), mode="bilinear") - MEAN) / STD


def to_model_frame(points: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Original-pixel points to the 1024 frame exactly as the official `get_rescaled_pts` does."""
    p = torch.from_numpy(points)
    x = torch.where(p[..., 0] >= 0, p[..., 0] * 1024 / width, -1.0)
    y = torch.where(p[..., 1] >= 0, p[..., 1] * 1024 / height, -1.0)
    return torch.stack([x, y], dim=-1)


def max_err(ours: torch.Tensor, reference: np.ndarray) -> float:
    return float(np.abs(ours.detach().numpy().astype(np.float64) - reference.astype(np.float64)).max())


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def vitt(request, converted_vitt):
    model, reference = converted_vitt
    model.config._attn_implementation = request.param
    yield model, reference, request.param
    model.config._attn_implementation = "sdpa"


def check_decoder_cases(model, reference, tag, report):
    image = reference[f"{tag}/image"]
    height, width = image.shape[:2]
    embeddings = torch.from_numpy(reference[f"{tag}/image_embeddings"])
    for case in CASES:
        key = f"{tag}/{case}"
        points = to_model_frame(reference[f"{key}/points"], height, width)
        labels = torch.from_numpy(reference[f"{key}/labels"])
        with torch.no_grad():
            sparse = model.get_prompt_embeddings(points, labels)
            output = model(image_embeddings=embeddings, input_points=points, input_labels=labels)
        errors = {
            "sparse": max_err(sparse.reshape(-1, *sparse.shape[-2:]), reference[f"{key}/sparse_embeddings"]),
            "iou": max_err(output.iou_scores, reference[f"{key}/iou_predictions"]),
        }
        if case == "multi":
            errors["logits"] = max_err(output.pred_masks[..., ::2, ::2], reference[f"{key}/low_res_logits_sub2"])
        else:
            errors["logits"] = max_err(output.pred_masks, reference[f"{key}/low_res_logits"])
        report[key] = errors
        assert errors["sparse"] <= SPARSE_TOL, (key, errors)
        assert errors["iou"] <= IOU_TOL, (key, errors)
        assert errors["logits"] <= LOGIT_TOL, (key, errors)

    key = f"{tag}/posneg"
    points = to_model_frame(reference[f"{key}/points"], height, width)
    labels = torch.from_numpy(reference[f"{key}/labels"])
    with torch.no_grad():
        single = model(image_embeddings=embeddings, input_points=points, input_labels=labels, multimask_output=False)
    assert single.pred_masks.shape == (1, 1, 1, 256, 256)
    assert max_err(single.pred_masks, reference[f"{key}/singlemask_low_res_logits"]) <= LOGIT_TOL
    assert max_err(single.iou_scores, reference[f"{key}/singlemask_iou_predictions"]) <= IOU_TOL


def check_embeddings(model, reference, tag):
    with torch.no_grad():
        embeddings = model.get_image_embeddings(official_pixel_values(reference[f"{tag}/image"]))
    error = max_err(embeddings, reference[f"{tag}/image_embeddings"])
    print(f"{tag} image embeddings max abs error {error:.2e}")
    assert error <= EMBED_TOL
    return embeddings


@pytest.mark.parametrize("tag", TAGS)
def test_vitt_matches_official(vitt, tag):
    model, reference, implementation = vitt
    embeddings = check_embeddings(model, reference, tag)
    report = {}
    check_decoder_cases(model, reference, tag, report)
    for key, errors in report.items():
        print(implementation, key, {name: f"{value:.1e}" for name, value in errors.items()})
    # Chained: our own embeddings through our decoder still match the official logits.
    image = reference[f"{tag}/image"]
    points = to_model_frame(reference[f"{tag}/box/points"], *image.shape[:2])
    labels = torch.from_numpy(reference[f"{tag}/box/labels"])
    with torch.no_grad():
        output = model(image_embeddings=embeddings, input_points=points, input_labels=labels)
    assert max_err(output.pred_masks, reference[f"{tag}/box/low_res_logits"]) <= LOGIT_TOL


def test_vitt_truncates_to_six_points_like_official(converted_vitt):
    model, reference = converted_vitt
    image = reference["astronaut/image"]
    points = to_model_frame(reference["astronaut/trunc8/points"], *image.shape[:2])
    labels = torch.from_numpy(reference["astronaut/trunc8/labels"])
    embeddings = torch.from_numpy(reference["astronaut/image_embeddings"])
    with torch.no_grad():
        sparse = model.get_prompt_embeddings(points, labels)
        output = model(image_embeddings=embeddings, input_points=points, input_labels=labels)
    assert max_err(sparse[0], reference["astronaut/trunc8/sparse_embeddings"]) <= SPARSE_TOL
    assert max_err(output.iou_scores, reference["astronaut/trunc8/iou_predictions"]) <= IOU_TOL
    assert max_err(output.pred_masks, reference["astronaut/trunc8/low_res_logits"]) <= LOGIT_TOL


def test_vitt_batch_of_two_images(converted_vitt):
    model, reference = converted_vitt
    image = reference["astronaut/image"]
    pixel_values = torch.cat([official_pixel_values(image), official_pixel_values(image[:, ::-1])])
    points = to_model_frame(reference["batch2/points"], *image.shape[:2])
    labels = torch.from_numpy(reference["batch2/labels"])
    with torch.no_grad():
        output = model(pixel_values=pixel_values, input_points=points, input_labels=labels)
    assert max_err(output.iou_scores, reference["batch2/iou_predictions"]) <= IOU_TOL
    assert max_err(output.pred_masks[..., ::4, ::4], reference["batch2/low_res_logits_sub4"]) <= LOGIT_TOL


@pytest.mark.slow
@pytest.mark.parametrize("tag", TAGS)
def test_vits_matches_official(converted_vits, tag):
    model, reference = converted_vits
    check_embeddings(model, reference, tag)
    check_decoder_cases(model, reference, tag, {})


@pytest.mark.slow
def test_vits_eager_matches_official(converted_vits):
    model, reference = converted_vits
    model.config._attn_implementation = "eager"
    try:
        check_embeddings(model, reference, "chelsea")
        check_decoder_cases(model, reference, "chelsea", {})
    finally:
        model.config._attn_implementation = "sdpa"
