"""End-to-end parity with the official EfficientSAM (../shared/reference, synthetic weights; see its README).

image -> EfficientSamProcessor -> converted model -> post_process_masks reproduces the official outputs:

- pixel values: `TAG/pixel_values_sub8` and `TAG/pixel_values_sum` (no model needed; in practice bit for bit);
- post-processing alone: bicubic upsampling of the reference low-res logits gives the reference full-size logits;
- with the converted synthetic checkpoints, prompts given as the official code got them (points with labels, boxes
  as `input_boxes`, the `multi` case also as ragged lists without explicit padding, and the B=2 `batch2` call):
  IoU and low-res logits (atol 1e-4), full-size logits (atol 1e-4, coffee/chelsea point) and boolean masks (equal
  wherever |reference logit| > 1e-3; where only sub-sampled logits are stored, at most 1e-3 of pixels differ).

Each checkpoint is converted once (conftest's session fixtures) and each image is encoded once (`embeddings`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from efficientsam_hf.processing_efficientsam import EfficientSamProcessor

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
if not REFERENCE_DIR.exists():
    pytest.skip(
        f"{REFERENCE_DIR} is not available (the ../shared folder next to the repository)", allow_module_level=True
    )

try:
    import efficientsam_hf.convert  # noqa: F401

    MODEL_AVAILABLE = True
except ImportError:
    MODEL_AVAILABLE = False
needs_model = pytest.mark.skipif(not MODEL_AVAILABLE, reason="model not yet available (efficientsam_hf.convert)")

TAGS = ("astronaut", "coffee", "chelsea")
CASES = ("point", "posneg", "box", "multi")
LOGIT_TOL = IOU_TOL = EMBED_TOL = 1e-4
MASK_LOGIT_MARGIN = 1e-3
MASK_MISMATCH_FRACTION = 1e-3


@pytest.fixture(scope="module")
def processor() -> EfficientSamProcessor:
    return EfficientSamProcessor()


@pytest.fixture(scope="module")
def references() -> dict:
    return {size: np.load(REFERENCE_DIR / f"efficientsam_{size}_reference.npz") for size in ("vitt", "vits")}


@pytest.fixture(scope="session")
def embeddings():
    """`embeddings(model, name, pixel_values)`: the image encoder runs once per (model, image) in the session."""
    cache: dict[tuple[int, str], torch.Tensor] = {}

    def get(model, name: str, pixel_values: torch.Tensor) -> torch.Tensor:
        key = (id(model), name)
        if key not in cache:
            with torch.no_grad():
                cache[key] = model.get_image_embeddings(pixel_values)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def models(request) -> dict:
    """Lazily the converted (model, reference) pairs from conftest, so Ti-only runs never convert S."""

    class Lazy(dict):
        def __missing__(self, size):
            self[size] = request.getfixturevalue(f"converted_{size}")
            return self[size]

    return Lazy()


def max_abs(ours: torch.Tensor, reference: np.ndarray) -> float:
    return float(np.abs(ours.detach().numpy().astype(np.float64) - reference.astype(np.float64)).max())


def reference_full_logits(reference, key: str, height: int, width: int) -> torch.Tensor:
    """The official full-size logits: stored for two cases, else bicubic of the stored low-res logits, which the
    reference README verified to be bit-identical to the official `forward` output."""
    if f"{key}/logits" in reference:
        return torch.from_numpy(reference[f"{key}/logits"][0])
    low_res = torch.from_numpy(reference[f"{key}/low_res_logits"][0])
    return F.interpolate(low_res, (height, width), mode="bicubic", align_corners=False)


def check_masks(masks: torch.Tensor, reference_masks: np.ndarray, reference_logits: torch.Tensor | None) -> float:
    """Boolean masks agree where the reference logit is clearly non-zero (or almost everywhere if no logits)."""
    differ = masks.numpy() != reference_masks
    if reference_logits is not None:
        clear = reference_logits.abs().numpy() > MASK_LOGIT_MARGIN
        assert not differ[clear].any(), f"{int(differ[clear].sum())} mask pixels differ away from the boundary"
    fraction = float(differ.mean())
    assert fraction <= MASK_MISMATCH_FRACTION, fraction
    return fraction


def strip_padding(points: np.ndarray, labels: np.ndarray) -> tuple[list, list]:
    """Reference prompts as ragged nested lists, without the explicit (-1, -1) / -1 padding points."""
    out_points, out_labels = [], []
    for image_points, image_labels in zip(points, labels):
        keep = [lab != -1 for lab in image_labels]
        out_points.append([p[k].tolist() for p, k in zip(image_points, keep)])
        out_labels.append([lab[k].tolist() for lab, k in zip(image_labels, keep)])
    return out_points, out_labels


# ---------------------------------------------------------------------------------------------------------------------
# No model needed
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["vitt", "vits"])
@pytest.mark.parametrize("tag", TAGS)
def test_pixel_values(processor, references, size, tag):
    reference = references[size]
    out = processor(reference[f"{tag}/image"])
    pixel_values = out["pixel_values"]
    assert pixel_values.shape == (1, 3, 1024, 1024)
    assert out["original_sizes"].tolist() == [list(reference[f"{tag}/image"].shape[:2])]
    assert max_abs(pixel_values[:, :, ::8, ::8], reference[f"{tag}/pixel_values_sub8"]) <= 1e-6
    total, expected = pixel_values.double().sum().item(), float(reference[f"{tag}/pixel_values_sum"])
    assert abs(total - expected) <= 1e-6 * max(1.0, abs(expected))


@pytest.mark.parametrize("tag", ["coffee", "chelsea"])
def test_post_processing_alone(processor, references, tag):
    reference = references["vitt"]
    height, width = reference[f"{tag}/image"].shape[:2]
    for case in ("point", "posneg", "box"):
        low_res = torch.from_numpy(reference[f"{tag}/{case}/low_res_logits"])
        logits = processor.post_process_masks(low_res, [[height, width]], binarize=False)[0]
        if case == "point":
            assert max_abs(logits, reference[f"{tag}/point/logits"][0]) == 0.0
        masks = processor.post_process_masks(low_res, [[height, width]])[0]
        nonzero = (logits != 0).numpy()  # the official masks are `logits >= 0`, ours `> 0`
        assert np.array_equal(masks.numpy()[nonzero], reference[f"{tag}/{case}/masks"][0][nonzero])


# ---------------------------------------------------------------------------------------------------------------------
# With the converted synthetic checkpoints
# ---------------------------------------------------------------------------------------------------------------------
def run_case(processor, model, reference, embeddings, size: str, tag: str, case: str, ragged: bool = False) -> dict:
    image = reference[f"{tag}/image"]
    height, width = image.shape[:2]
    key = f"{tag}/{case}"
    points, labels = reference[f"{key}/points"], reference[f"{key}/labels"]
    if case == "box":  # the official corner points (labels 2, 3) given as a box
        assert labels.tolist() == [[[2, 3]]]
        inputs = processor(image, input_boxes=[[points[0, 0].reshape(4).tolist()]])
    elif ragged:
        inputs = processor(image, *strip_padding(points, labels))
    else:
        inputs = processor(image, input_points=points, input_labels=labels)
    image_embeddings = embeddings(model, f"{size}/{tag}", inputs["pixel_values"])
    prompts = {k: inputs[k] for k in ("input_points", "input_labels", "input_boxes") if k in inputs}
    with torch.no_grad():
        outputs = model(image_embeddings=image_embeddings, multimask_output=True, **prompts)

    errors = {"iou": max_abs(outputs.iou_scores, reference[f"{key}/iou_predictions"])}
    if case == "multi":
        errors["low_res"] = max_abs(outputs.pred_masks[..., ::2, ::2], reference[f"{key}/low_res_logits_sub2"])
    else:
        errors["low_res"] = max_abs(outputs.pred_masks, reference[f"{key}/low_res_logits"])
    full = processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"], binarize=False)[0]
    masks = processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"])[0]
    assert full.shape == masks.shape == (labels.shape[1], 3, height, width)
    if f"{key}/logits" in reference:
        errors["full_logits"] = max_abs(full, reference[f"{key}/logits"][0])
    ref_logits = None if case == "multi" else reference_full_logits(reference, key, height, width)
    errors["mask_mismatch_fraction"] = check_masks(masks, reference[f"{key}/masks"][0], ref_logits)

    assert errors["iou"] <= IOU_TOL, errors
    assert errors["low_res"] <= LOGIT_TOL, errors
    assert errors.get("full_logits", 0.0) <= LOGIT_TOL, errors
    print(f"{size} {key}{' (ragged)' if ragged else ''}: {errors}")
    return errors


def run_embeddings(processor, model, reference, embeddings, size: str, tag: str) -> float:
    pixel_values = processor(reference[f"{tag}/image"])["pixel_values"]
    error = max_abs(embeddings(model, f"{size}/{tag}", pixel_values), reference[f"{tag}/image_embeddings"])
    print(f"{size} {tag} image embeddings: {error:.3g}")
    assert error <= EMBED_TOL
    return error


def run_batch2(processor, model, reference, embeddings, size: str) -> None:
    astronaut = reference["astronaut/image"]
    images = [astronaut, np.ascontiguousarray(astronaut[:, ::-1])]
    inputs = processor(images, input_points=reference["batch2/points"], input_labels=reference["batch2/labels"])
    assert inputs["pixel_values"].shape == (2, 3, 1024, 1024)
    image_embeddings = torch.cat(
        [
            embeddings(model, f"{size}/astronaut", inputs["pixel_values"][:1]),
            embeddings(model, f"{size}/astronaut_flipped", inputs["pixel_values"][1:]),
        ]
    )
    with torch.no_grad():
        outputs = model(
            image_embeddings=image_embeddings, input_points=inputs["input_points"], input_labels=inputs["input_labels"]
        )
    errors = {
        "iou": max_abs(outputs.iou_scores, reference["batch2/iou_predictions"]),
        "low_res": max_abs(outputs.pred_masks[..., ::4, ::4], reference["batch2/low_res_logits_sub4"]),
    }
    masks = processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"])
    assert len(masks) == 2
    errors["mask_mismatch_fraction"] = max(check_masks(masks[i], reference["batch2/masks"][i], None) for i in range(2))
    print(f"{size} batch2: {errors}")
    assert errors["iou"] <= IOU_TOL and errors["low_res"] <= LOGIT_TOL, errors


@needs_model
@pytest.mark.parametrize("tag", TAGS)
def test_vitt_image_embeddings(processor, models, embeddings, tag):
    model, reference = models["vitt"]
    run_embeddings(processor, model, reference, embeddings, "vitt", tag)


@needs_model
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("tag", TAGS)
def test_vitt_cases(processor, models, embeddings, tag, case):
    model, reference = models["vitt"]
    run_case(processor, model, reference, embeddings, "vitt", tag, case)


@needs_model
@pytest.mark.parametrize("tag", TAGS)
def test_vitt_multi_as_ragged_lists(processor, models, embeddings, tag):
    """The `multi` queries without their explicit padding: the processor pads them to the very same tensors."""
    model, reference = models["vitt"]
    run_case(processor, model, reference, embeddings, "vitt", tag, "multi", ragged=True)


@needs_model
def test_vitt_batch2(processor, models, embeddings):
    model, reference = models["vitt"]
    run_batch2(processor, model, reference, embeddings, "vitt")


@needs_model
def test_vits_astronaut(processor, models, embeddings):
    model, reference = models["vits"]
    run_embeddings(processor, model, reference, embeddings, "vits", "astronaut")
    for case in CASES:
        run_case(processor, model, reference, embeddings, "vits", "astronaut", case)


@needs_model
def test_vits_batch2(processor, models, embeddings):
    model, reference = models["vits"]
    run_batch2(processor, model, reference, embeddings, "vits")


@needs_model
@pytest.mark.slow
@pytest.mark.parametrize("tag", ["coffee", "chelsea"])
def test_vits_other_images(processor, models, embeddings, tag):
    model, reference = models["vits"]
    run_embeddings(processor, model, reference, embeddings, "vits", tag)
    for case in CASES:
        run_case(processor, model, reference, embeddings, "vits", tag, case)
