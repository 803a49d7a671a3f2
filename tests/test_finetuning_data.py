"""SA-1B / COCO readers: rows, lazy mask decoding, and errors that name the file and the field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from efficientsam_hf.finetuning import decode_masks, load_coco_dataset, load_sa1b_dataset, with_decoded_masks


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _annotation(mask: np.ndarray) -> dict:
    ys, xs = np.nonzero(mask)
    return {
        "segmentation": _rle(mask),
        "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
        "area": int(mask.sum()),
        "predicted_iou": 0.9,
        "point_coords": [[float(xs[0]), float(ys[0])]],
        "stability_score": 0.95,
    }


@pytest.fixture
def sa1b_dir(tmp_path):
    """Two SA-1B-style images (40x60) with two rectangular masks each."""
    for i in (1, 2):
        Image.fromarray(np.full((40, 60, 3), 80 * i, dtype=np.uint8)).save(tmp_path / f"sa_{i}.jpg")
        masks = [np.zeros((40, 60), bool), np.zeros((40, 60), bool)]
        masks[0][5:15, 10 * i : 10 * i + 20] = True
        masks[1][20:38, 2:30] = True
        info = {"image_id": i, "width": 60, "height": 40, "file_name": f"sa_{i}.jpg"}
        (tmp_path / f"sa_{i}.json").write_text(
            json.dumps({"image": info, "annotations": [_annotation(m) for m in masks]})
        )
    return tmp_path


def test_sa1b_reader_keeps_masks_encoded_and_decodes_them_exactly(sa1b_dir):
    dataset = load_sa1b_dataset(sa1b_dir)
    assert len(dataset) == 2 and dataset[1]["index"] == 1
    row = dataset[1]
    assert isinstance(row["segmentations"][0], str)  # nothing decoded yet
    assert row["predicted_ious"] == pytest.approx([0.9, 0.9]) and row["point_coords"][0] == [[20.0, 5.0]]
    masks = decode_masks(row, [1])
    assert masks.shape == (1, 40, 60) and masks.sum() == 18 * 28 and masks[0, 20:38, 2:30].all()
    decoded = with_decoded_masks(dataset)[0]
    assert decoded["masks"].shape == (2, 40, 60) and decoded["image"].size == (60, 40)


def test_coco_reader_on_shared_data(coco_dev_dir):
    dataset = load_coco_dataset(coco_dev_dir / "instances.json", max_images=3)
    assert len(dataset) == 3
    row = dataset[0]
    masks = decode_masks(row)
    assert masks.shape == (len(row["segmentations"]), row["height"], row["width"])
    assert all(m.any() for m in masks)
    x, y, w, h = row["bboxes"][0]
    ys, xs = np.nonzero(masks[0])  # the polygon's mask lies in its COCO box (1 pixel of rasterisation slack)
    assert xs.min() >= x - 1 and xs.max() <= x + w + 1 and ys.min() >= y - 1 and ys.max() <= y + h + 1


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d.pop("image"), "image"),
        (lambda d: d.pop("annotations"), "annotations"),
        (lambda d: d["image"].update(height="40"), "image.height"),
        (lambda d: d["annotations"][1].update(bbox=[1, 2, -3, 4]), "annotations[1].bbox"),
        (lambda d: d["annotations"][0]["segmentation"].update(size=[41, 60]), "annotations[0].segmentation.size"),
        (lambda d: d["annotations"][1]["segmentation"].update(counts=""), "annotations[1].segmentation.counts"),
        (lambda d: d["annotations"][0].pop("predicted_iou"), "annotations[0].predicted_iou"),
        (lambda d: d["annotations"][0].update(point_coords=[[1.0]]), "annotations[0].point_coords"),
        (lambda d: d["annotations"][1].pop("segmentation"), "annotations[1].segmentation"),
    ],
)
def test_malformed_sa1b_file_raises_naming_file_and_field(sa1b_dir, edit, field):
    path = sa1b_dir / "sa_2.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as error:
        load_sa1b_dataset(sa1b_dir)
    assert "sa_2.json" in str(error.value) and field in str(error.value)


def test_invalid_json_and_bad_rle_string_raise(sa1b_dir):
    (sa1b_dir / "sa_1.json").write_text("{not json")
    with pytest.raises(ValueError, match="sa_1.json: not a valid JSON"):
        load_sa1b_dataset(sa1b_dir)
    data = json.loads((sa1b_dir / "sa_2.json").read_text())
    data["annotations"][0]["segmentation"]["counts"] = "\x00garbage"
    (sa1b_dir / "sa_1.json").write_text(json.dumps({**data, "image": {**data["image"], "file_name": "sa_1.jpg"}}))
    with pytest.raises(ValueError, match=r"sa_1.json: field 'annotations\[0\].segmentation.counts'"):
        load_sa1b_dataset(sa1b_dir)


def test_malformed_coco_file_raises_naming_file_and_field(tmp_path):
    good_polygon = [[1, 1, 10, 1, 10, 10]]
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "height": 20, "width": 20}],
        "annotations": [{"id": 1, "image_id": 7, "segmentation": good_polygon, "bbox": [1, 1, 9, 9], "iscrowd": 0}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    assert len(load_coco_dataset(path)) == 1
    cases = [
        ({"image_id": 8}, "annotations[0].image_id"),
        ({"segmentation": [[1, 2, 3]]}, "annotations[0].segmentation"),
        ({"bbox": [1, 1, 9]}, "annotations[0].bbox"),
    ]
    for change, field in cases:
        path.write_text(json.dumps({**data, "annotations": [{**data["annotations"][0], **change}]}))
        with pytest.raises(ValueError) as error:
            load_coco_dataset(path)
        assert "instances.json" in str(error.value) and field in str(error.value)
