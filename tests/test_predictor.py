"""EfficientSamPredictor: one encoder pass per image, then many prompts, same numbers as processor + model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from efficientsam_hf import EfficientSamProcessor
from efficientsam_hf.predictor import EfficientSamPredictor


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))


def test_set_image_encodes_once_and_predict_reuses_it(tiny_model, image, monkeypatch):
    predictor = EfficientSamPredictor(tiny_model)
    calls = []
    original = tiny_model.get_image_embeddings
    monkeypatch.setattr(tiny_model, "get_image_embeddings", lambda *a, **k: calls.append(1) or original(*a, **k))
    predictor.set_image(image)
    first = predictor.predict(points=[[10, 20], [40, 30]], labels=[1, 0])
    second = predictor.predict(boxes=[[5, 5, 50, 40], [0, 0, 80, 60]])
    assert len(calls) == 1
    assert first.masks.shape == (1, 3, 60, 80) and first.masks.dtype == torch.bool
    assert second.masks.shape == (2, 3, 60, 80) and second.scores.shape == (2, 3)
    assert second.low_res_logits.shape == (2, 3, 256, 256)
    assert torch.all(first.scores[:, :-1] >= first.scores[:, 1:])  # sorted, best first


def test_predict_matches_processor_plus_model(tiny_model, image):
    processor = EfficientSamProcessor()
    predictor = EfficientSamPredictor(tiny_model, processor)
    predictor.set_image(image)
    got = predictor.predict(points=[[10, 20]], labels=[1], boxes=[2, 3, 60, 50], multimask_output=True)
    inputs = processor(image, input_points=[[[[10, 20]]]], input_labels=[[[1]]], input_boxes=[[[2, 3, 60, 50]]])
    with torch.no_grad():
        out = tiny_model(**{k: v for k, v in inputs.items() if k not in ("original_sizes", "reshaped_input_sizes")})
    scores, order = out.iou_scores[0].sort(dim=-1, descending=True)
    masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][:, order[0]]
    torch.testing.assert_close(got.scores, scores, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.masks, masks)


def test_predict_rejects_bad_use(tiny_model, image):
    predictor = EfficientSamPredictor(tiny_model)
    with pytest.raises(ValueError, match="set_image"):
        predictor.predict(points=[[1, 1]])
    predictor.set_image(image)
    with pytest.raises(ValueError, match="outside the image"):
        predictor.predict(points=[[500, 1]])
    with pytest.raises(ValueError, match="points or boxes"):
        predictor.predict()
    with pytest.raises(TypeError, match="EfficientSamModel"):
        EfficientSamPredictor(object())
