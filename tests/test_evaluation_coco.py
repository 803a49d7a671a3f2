"""Reading COCO files: validation names the bad field; crowd objects are skipped by the prompt protocols."""

import copy
import json
import re

import numpy as np
import pytest
from PIL import Image

from efficientsam_hf.evaluation import (
    ZeroShotEvalSettings,
    coco_from_dict,
    evaluate_image,
    load_coco,
    load_detections,
    validate_instances,
)


def _dataset():
    polygon = [2.0, 2.0, 12.0, 2.0, 12.0, 10.0, 2.0, 10.0]
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 12}],
        "categories": [{"id": 3, "name": "thing"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "segmentation": [polygon], "area": 80.0,
             "bbox": [2.0, 2.0, 10.0, 8.0], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 3, "segmentation": {"counts": [0, 16, 176], "size": [12, 16]},
             "area": 16.0, "bbox": [0.0, 0.0, 2.0, 8.0], "iscrowd": 1},
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d["annotations"][0].pop("bbox"), "annotations[0].bbox"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotations[0].bbox"),
        (lambda d: d["annotations"][1].update(image_id=99), "annotations[1].image_id"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2]]), "annotations[0].segmentation[0]"),
        (lambda d: d["images"][0].update(width="16"), "images[0].width"),
        (lambda d: d.pop("categories"), "categories"),
    ],
)
def test_malformed_annotations_name_the_field(edit, field):
    dataset = _dataset()
    edit(dataset)
    with pytest.raises(ValueError, match=re.escape(field)):
        validate_instances(dataset)


def test_malformed_files_and_detections(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="annotation_file"):
        load_coco(bad)
    coco = coco_from_dict(_dataset())
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 4, 4], "score": "high"}]))
    with pytest.raises(ValueError, match=r"detections\[0\].score"):
        load_detections(detections, coco)


class _BoxOracle:
    """Answers every box with the pixels inside it; records the prompts it got."""

    def __init__(self):
        self.boxes = []

    def set_image(self, image):
        self.shape = (image.height, image.width)

    def predict(self, boxes=None, points=None, labels=None):
        prompts = boxes if boxes is not None else [[*p[0], *p[0]] for p in points]
        masks = np.zeros((len(prompts), *self.shape), bool)
        for mask, (x0, y0, x1, y1) in zip(masks, prompts):
            mask[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
        self.boxes += [list(b) for b in (boxes or [])]
        return masks, np.ones(len(prompts), np.float32)


def test_crowd_annotations_are_skipped():
    coco = coco_from_dict(copy.deepcopy(_dataset()))
    segmenter = _BoxOracle()
    image = Image.new("RGB", (16, 12))
    settings = ZeroShotEvalSettings(point_strategies=["center"], num_clicks=[1, 2])
    record = evaluate_image(segmenter, coco, image, 1, settings)
    assert record["num_crowd_skipped"] == 1
    assert [o["annotation_id"] for o in record["boxes"]] == [10]
    assert [o["annotation_id"] for o in record["points"]["center"]] == [10]
    assert segmenter.boxes == [[2.0, 2.0, 12.0, 10.0]]
    assert record["boxes"][0]["iou"] == pytest.approx(1.0)  # the polygon fills its box exactly
    assert len(record["points"]["center"][0]["clicks"]) == 2
