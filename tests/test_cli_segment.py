"""`efficientsam-hf segment` and `annotate` end to end: pictures, masks, COCO files, resume, bad input, 2 processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from efficientsam_hf import segment_command
from efficientsam_hf.cli import main

from conftest import REFERENCE_DIR, require_shared

IMAGE = "000000000139.jpg"  # 640x426
LOOSE = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.fixture(scope="module")
def tiny_folder(tiny_model_folder):
    return tiny_model_folder


@pytest.fixture
def image_path(coco_dev_dir):
    return coco_dev_dir / "images" / IMAGE


@pytest.fixture
def small_images(coco_dev_dir, tmp_path):
    """Three dev images, copied (byte for byte) into a folder of their own."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in sorted(os.listdir(coco_dev_dir / "images"))[:3]:
        shutil.copyfile(coco_dev_dir / "images" / name, folder / name)
    return folder


def _fails_with(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert "Traceback" not in err[0]


def test_bad_input_is_one_line_and_status_2(capsys, tmp_path, image_path, tiny_folder):
    out = ["--model", str(tiny_folder), "--output", str(tmp_path / "o.png")]
    _fails_with(capsys, ["segment", str(tmp_path / "missing.jpg"), *out], "image not found")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    _fails_with(capsys, ["segment", str(tmp_path / "broken.jpg"), *out], "cannot read image")
    for bad in ("12", "1,2,3,4", "a,b", "1,2,5", "nan,1"):
        _fails_with(capsys, ["segment", str(image_path), "--point", bad, *out], "--point")
    _fails_with(capsys, ["segment", str(image_path), "--point", "641,10", *out], "outside the image")
    _fails_with(capsys, ["segment", str(image_path), "--box", "10,10,5,20", *out], "X0 <= X1")
    _fails_with(capsys, ["segment", str(image_path), "--box", "0,0,700,20", *out], "outside the image")
    _fails_with(capsys, ["segment", str(image_path), "--point", "1,1", "--everything", *out], "--everything")
    _fails_with(capsys, ["annotate", str(tmp_path / "nothing"), "--output", str(tmp_path / "a.json")], "folder")
    assert not (tmp_path / "o.png").exists()


def test_segment_prompts_writes_picture_and_coco_masks(capsys, tmp_path, image_path, tiny_folder):
    picture, masks_out = tmp_path / "picture.png", tmp_path / "masks.json"
    argv = ["segment", str(image_path), "--point", "300,200", "--point", "100,100,0", "--box", "50,50,400,300"]
    assert main([*argv, "--model", str(tiny_folder), "--output", str(picture), "--masks-out", str(masks_out)]) == 0
    drawn = np.asarray(Image.open(picture))
    original = np.asarray(Image.open(image_path).convert("RGB"))
    assert drawn.shape == original.shape
    assert tuple(drawn[200, 300]) == (0, 220, 0)  # the positive click, in green
    assert tuple(drawn[100, 100]) == (230, 0, 0)  # the negative click, in red
    coco = json.loads(masks_out.read_text())
    assert coco["images"][0]["width"] == 640 and len(coco["annotations"]) == 1
    mask = mask_utils.decode(coco["annotations"][0]["segmentation"])
    assert mask.shape == (426, 640) and coco["annotations"][0]["area"] == int(mask.sum())


def test_segment_everything_writes_label_png(tmp_path, image_path, tiny_folder):
    picture, labels = tmp_path / "everything.png", tmp_path / "labels.png"
    argv = ["segment", str(image_path), "--model", str(tiny_folder), "--output", str(picture), "--masks-out"]
    assert main([*argv, str(labels), *LOOSE]) == 0
    label_image = np.asarray(Image.open(labels))
    assert label_image.shape == (426, 640) and label_image.max() >= 1
    assert not np.array_equal(np.asarray(Image.open(picture)), np.asarray(Image.open(image_path).convert("RGB")))


def test_annotate_resumes_without_recomputing(tmp_path, small_images, tiny_folder, monkeypatch):
    output = tmp_path / "annotations.json"
    argv = ["annotate", str(small_images), "--output", str(output), "--model", str(tiny_folder), *LOOSE]
    real = segment_command.segment_everything
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args[2].size)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(segment_command, "segment_everything", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    assert not output.exists() and len(list(output.with_name("annotations.json.parts").glob("*.json"))) == 1

    calls.clear()
    monkeypatch.setattr(segment_command, "segment_everything", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(argv) == 0
    assert len(calls) == 2  # only the two unfinished images
    coco = json.loads(output.read_text())
    assert [image["file_name"] for image in coco["images"]] == sorted(os.listdir(small_images))
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"]) > 0
    assert not output.with_name("annotations.json.parts").exists()

    calls.clear()
    assert main(argv) == 0 and calls == []  # finished: nothing recomputed, same file
    assert json.loads(output.read_text()) == coco


@pytest.mark.slow
def test_segment_and_annotate_with_synthetic_checkpoint(tmp_path, coco_dev_dir, small_images, monkeypatch):
    """The main job on real images with the converted synthetic Ti checkpoint (random weights, real size)."""
    checkpoint = require_shared(REFERENCE_DIR / "efficient_sam_vitt_synthetic_fp16.pt")
    monkeypatch.setattr("huggingface_hub.constants.HF_HOME", str(tmp_path / "hf"))
    picture = tmp_path / "picture.png"
    argv = ["segment", str(coco_dev_dir / "images" / IMAGE), "--point", "420,250", "--box", "380,150,470,330"]
    assert main([*argv, "--checkpoint", str(checkpoint), "--output", str(picture)]) == 0
    assert Image.open(picture).size == (640, 426)
    assert list((tmp_path / "hf" / "efficientsam-hf" / "converted").glob("*/config.json"))  # cached conversion
    for extra in small_images.iterdir():
        if extra.name != sorted(os.listdir(small_images))[0]:
            extra.unlink()
    output = tmp_path / "annotations.json"
    argv = ["annotate", str(small_images), "--output", str(output), "--checkpoint", str(checkpoint), *LOOSE]
    assert main(argv) == 0
    assert len(json.loads(output.read_text())["images"]) == 1


@pytest.mark.slow
def test_annotate_with_two_processes(tmp_path, small_images, tiny_folder):
    """`accelerate launch --num_processes 2 --cpu`: each process takes its share, the main one merges one file."""
    output = tmp_path / "annotations.json"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu"]
    command += [
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "efficientsam_hf.cli",
    ]
    command += ["annotate", str(small_images), "--output", str(output), "--model", str(tiny_folder), *LOOSE]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=500, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    coco = json.loads(output.read_text())
    assert [image["file_name"] for image in coco["images"]] == sorted(os.listdir(small_images))
    assert result.stdout.count("wrote") == 1  # only the main process merges
