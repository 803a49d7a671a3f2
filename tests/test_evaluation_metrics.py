"""IoU, area buckets and COCOeval wiring of the zero-shot evaluation."""

import numpy as np
import pytest

from efficientsam_hf.evaluation import area_bucket, encode_mask, load_coco, mask_iou, segm_ap, summarize_ious


def test_mask_iou_hand_made_case():
    gt = np.zeros((6, 6), bool)
    gt[1:3, 1:3] = True  # 4 pixels
    pred = np.zeros((6, 6), bool)
    pred[2:4, 1:3] = True  # 4 pixels, 2 shared -> IoU 2 / 6
    assert mask_iou(gt, pred) == pytest.approx(1 / 3)
    assert mask_iou(gt, gt) == 1.0
    assert mask_iou(gt, ~gt) == 0.0
    with pytest.raises(ValueError, match="shape"):
        mask_iou(gt, pred[:5])


def test_area_buckets_follow_coco_boundaries():
    assert [area_bucket(a) for a in (0, 1023.9, 1024, 9215.9, 9216, 1e6)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
        "large",
    ]
    summary = summarize_ious([{"area": 10, "iou": 0.5}, {"area": 10, "iou": 1.0}, {"area": 5000, "iou": 0.0}])
    assert summary["miou"] == pytest.approx(50.0)
    assert summary["miou_small"] == pytest.approx(75.0)
    assert summary["miou_medium"] == pytest.approx(0.0)
    assert summary["miou_large"] is None and summary["count_large"] == 0
    assert summary["count"] == 3


def test_ground_truth_masks_as_detections_give_ap_one(coco_dev_dir):
    coco = load_coco(coco_dev_dir / "instances.json")
    results = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "score": 1.0,
            "segmentation": encode_mask(coco.annToMask(a).astype(bool)),
        }
        for a in coco.dataset["annotations"]
        if not a["iscrowd"]
    ]
    ap = segm_ap(coco, results, coco.getImgIds())
    assert [round(ap[k], 3) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")] == [1.0] * 6
    # a wrong category on every prediction must be caught: AP drops to 0
    wrong = [dict(r, category_id=next(c for c in coco.cats if c != r["category_id"])) for r in results]
    assert segm_ap(coco, wrong, coco.getImgIds())["AP"] == 0.0
