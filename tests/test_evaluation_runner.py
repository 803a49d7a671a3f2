"""The evaluation loop: perfect predictions score perfectly, records are cached and resumed, and the script runs
EfficientSAM and transformers' SamModel through the same code."""

import json
import sys

import numpy as np
import pytest
import torch

from efficientsam_hf.evaluation import ZeroShotEvalSettings, evaluate, gt_boxes_as_detections, load_coco
from efficientsam_hf.evaluation.runner import xywh_to_xyxy

from conftest import REPO_ROOT, tiny_config

FEW_IMAGES = [802, 11813, 217285]  # 217285 holds a crowd annotation


class GroundTruthOracle:
    """Answers a box with the ground-truth mask of the object it was drawn from (a perfect model)."""

    def __init__(self, coco):
        self.masks = {}
        for a in coco.dataset["annotations"]:
            info = coco.imgs[a["image_id"]]
            key = tuple(np.round(xywh_to_xyxy(a["bbox"], info["width"], info["height"]), 3))
            self.masks[key] = coco.annToMask(a).astype(bool)
        self.images_encoded = 0

    def set_image(self, image):
        self.images_encoded += 1

    def predict(self, boxes=None, points=None, labels=None):
        masks = np.stack([self.masks[tuple(np.round(b, 3))] for b in boxes])
        return masks, np.ones(len(boxes), np.float32)


@pytest.fixture(scope="module")
def coco(coco_dev_dir):
    return load_coco(coco_dev_dir / "instances.json")


def test_ground_truth_predictions_score_perfectly(coco, coco_dev_dir, tmp_path):
    settings = ZeroShotEvalSettings(point_strategies=[])
    summary = evaluate(
        GroundTruthOracle(coco),
        coco,
        coco_dev_dir / "images",
        settings,
        tmp_path / "cache",
        detections=gt_boxes_as_detections(coco),
        progress=False,
    )
    assert summary["num_images"] == 40 and summary["num_crowd_skipped"] == 2
    boxes = summary["box_prompts"]
    assert boxes["count"] == 311 and (boxes["count_small"], boxes["count_medium"], boxes["count_large"]) == (
        134,
        94,
        83,
    )
    assert [boxes[k] for k in ("miou", "miou_small", "miou_medium", "miou_large")] == [100.0] * 4
    ap = summary["detector_boxes"]
    assert [round(ap[k], 3) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")] == [1.0] * 6


def test_cache_resumes_and_refuses_other_settings(coco, coco_dev_dir, tmp_path):
    settings = ZeroShotEvalSettings(point_strategies=["center"], num_clicks=[1])
    oracle = _PointsToBoxes(GroundTruthOracle(coco))
    run = dict(image_ids=FEW_IMAGES, progress=False)
    first = evaluate(oracle, coco, coco_dev_dir / "images", settings, tmp_path, **run)
    assert oracle.inner.images_encoded == 3
    (tmp_path / "image_11813.json").unlink()  # as if interrupted before this image
    second = evaluate(oracle, coco, coco_dev_dir / "images", settings, tmp_path, **run)
    assert oracle.inner.images_encoded == 4  # only the missing image was recomputed
    assert second["box_prompts"] == first["box_prompts"]
    assert second["point_prompts"] == first["point_prompts"]
    assert second["timing"]["images_from_cache"] == 2
    other = ZeroShotEvalSettings(point_strategies=["center"], num_clicks=[1], seed=1)
    with pytest.raises(ValueError, match="overwrite_cache"):
        evaluate(oracle, coco, coco_dev_dir / "images", other, tmp_path, **run)


class _PointsToBoxes:
    """Clicks are answered like the box of the object under the first click (enough to exercise the loop)."""

    def __init__(self, inner):
        self.inner = inner

    def set_image(self, image):
        self.inner.set_image(image)
        self.shape = (image.height, image.width)

    def predict(self, boxes=None, points=None, labels=None):
        if boxes is not None:
            return self.inner.predict(boxes=boxes)
        candidates = [m for m in self.inner.masks.values() if m.shape == self.shape]
        masks = [next(m for m in candidates if _contains(m, p[0])) for p in points]
        return np.stack(masks), np.ones(len(points), np.float32)


def _contains(mask, point):
    return mask[int(point[1]), int(point[0])]


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    """Tiny random EfficientSAM and transformers SamModel folders, each with its processor."""
    from transformers import SamConfig, SamModel, SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    from efficientsam_hf import EfficientSamModel, EfficientSamProcessor

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    EfficientSamModel(tiny_config()).save_pretrained(root / "efficientsam-tiny")
    EfficientSamProcessor().save_pretrained(root / "efficientsam-tiny")
    sam_config = SamConfig(
        vision_config=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, output_channels=32, mlp_dim=64,
            global_attn_indexes=[1], num_pos_feats=16,
        ),
        prompt_encoder_config=dict(hidden_size=32),
        mask_decoder_config=dict(hidden_size=32, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32),
    )  # fmt: skip
    SamModel(sam_config).save_pretrained(root / "sam-tiny")
    SamProcessor(SamImageProcessorPil()).save_pretrained(root / "sam-tiny")  # no torchvision: PIL backend
    return root


def test_script_evaluates_efficientsam_and_sam_in_one_run(model_folders, coco_dev_dir, tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "training"))
    try:
        from run_zero_shot_eval import main
    finally:
        sys.path.pop(0)
    torch.set_num_threads(2)
    args = [
        "--model_name_or_path", str(model_folders / "efficientsam-tiny"), str(model_folders / "sam-tiny"),
        "--annotation_file", str(coco_dev_dir / "instances.json"),
        "--image_dir", str(coco_dev_dir / "images"),
        "--image_ids", "101787", "--gt_boxes_as_detections",
        "--point_strategies", "center", "random", "--num_clicks", "1", "2",
        "--output_dir", str(tmp_path), "--disable_tqdm",
    ]  # fmt: skip
    report = main(args)
    written = json.loads((tmp_path / "results.json").read_text())
    assert [m["model"]["class"] for m in written["models"]] == ["EfficientSamModel", "SamModel"]
    assert written["settings"]["multimask_output"] is True
    for model in written["models"]:
        assert model["mask_selection"] == "multimask_highest_predicted_iou"
        summary = model["summary"]
        assert summary["num_images"] == 1 and summary["box_prompts"]["count"] == 1
        assert 0.0 <= summary["box_prompts"]["miou"] <= 100.0
        assert set(summary["point_prompts"]) == {"center", "random"}
        assert set(summary["point_prompts"]["random"]) == {"1_click", "2_clicks"}
        assert 0.0 <= summary["detector_boxes"]["AP"] <= 1.0
    assert written["models"] == json.loads(json.dumps(report["models"]))
    table = (tmp_path / "results.md").read_text()
    assert "EfficientSamModel" in table and "SamModel" in table and "| AP |" in table
    records = sorted(p.name for p in tmp_path.glob("*/cache/image_*.json"))
    assert records == ["image_101787.json", "image_101787.json"]
    clicks = [
        json.loads(p.read_text())["points"]["random"][0]["clicks"][0] for p in tmp_path.glob("*/cache/image_*.json")
    ]
    assert clicks[0] == clicks[1]  # same seed, same first click for both models
