"""The model-agnostic adapter keeps the right mask per prompt: best predicted IoU of 3, or the single-mask output."""

import numpy as np
import pytest
import torch
from PIL import Image

from efficientsam_hf import EfficientSamProcessor
from efficientsam_hf.evaluation import PromptableSegmenter


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


@pytest.mark.parametrize("multimask", [True, False])
def test_kept_mask_matches_a_direct_model_call(tiny_model, image, multimask):
    processor = EfficientSamProcessor()
    segmenter = PromptableSegmenter(tiny_model, processor, multimask_output=multimask, prompt_batch_size=2)
    segmenter.set_image(image)
    boxes = [[2.0, 3.0, 40.0, 30.0], [10.0, 10.0, 60.0, 47.0], [0.0, 0.0, 64.0, 48.0]]
    masks, scores = segmenter.predict(boxes=boxes)  # 2 chunks: 2 + 1 prompts
    assert masks.shape == (3, 48, 64) and masks.dtype == bool and scores.shape == (3,)

    inputs = processor(image, input_boxes=[boxes], return_tensors="pt")
    with torch.no_grad():
        out = tiny_model(
            pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"], multimask_output=multimask
        )
    expected_scores, best = out.iou_scores[0].max(dim=-1)
    full = processor.post_process_masks(out.pred_masks, inputs["original_sizes"])[0]
    expected_masks = full[torch.arange(3), best].numpy()
    np.testing.assert_allclose(scores, expected_scores.numpy(), atol=1e-5)
    assert (masks == expected_masks).mean() > 0.999  # equal up to logits within float noise of the threshold
    assert segmenter.mask_selection == ("multimask_highest_predicted_iou" if multimask else "single_mask_output")
    if multimask:
        assert out.iou_scores.shape[-1] == 3


def test_points_need_labels_and_an_image(tiny_model, image):
    segmenter = PromptableSegmenter(tiny_model, EfficientSamProcessor())
    with pytest.raises(ValueError, match="set_image"):
        segmenter.predict(boxes=[[0, 0, 5, 5]])
    segmenter.set_image(image)
    with pytest.raises(ValueError, match="labels"):
        segmenter.predict(points=[[[3.0, 4.0]]])
    masks, _ = segmenter.predict(points=[[[3.5, 4.5], [20.5, 20.5]]], labels=[[1, 0]])
    assert masks.shape == (1, 48, 64)
    with pytest.raises(TypeError, match="get_image_embeddings"):
        PromptableSegmenter(torch.nn.Linear(2, 2), EfficientSamProcessor())
