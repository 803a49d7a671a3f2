"""End-to-end finetuning on CPU with a tiny model and two ../shared COCO images: the script trains, evaluates,
saves a loadable folder, and a run resumed from a checkpoint ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file

from efficientsam_hf import EfficientSamModel, EfficientSamProcessor
from efficientsam_hf.finetuning import (
    EfficientSamFinetuningCollator,
    EfficientSamForFinetuning,
    load_coco_dataset,
)

from conftest import REPO_ROOT, tiny_config

# Two images whose masks are large (28%/71% and 19%/10% of the image), so that a few steps move mIoU measurably.
IMAGE_IDS = (519208, 802)


def _load_script():
    spec = importlib.util.spec_from_file_location("run_finetuning", REPO_ROOT / "training" / "run_finetuning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_finetuning"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, coco_dev_dir):
    """A tiny model folder and a COCO json holding only IMAGE_IDS (images stay in ../shared)."""
    root = tmp_path_factory.mktemp("finetuning")
    torch.manual_seed(0)
    EfficientSamModel(tiny_config()).save_pretrained(root / "tiny")
    data = json.loads((coco_dev_dir / "instances.json").read_text())
    data["images"] = [i for i in data["images"] if i["id"] in IMAGE_IDS]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in IMAGE_IDS]
    (root / "instances.json").write_text(json.dumps(data))
    return root


def _common_args(workspace, coco_dev_dir, output_dir):
    return [
        "--model_name_or_path", str(workspace / "tiny"),
        "--train_data", str(workspace / "instances.json"),
        "--train_image_dir", str(coco_dev_dir / "images"),
        "--output_dir", str(output_dir),
        "--max_masks_per_image", "2",
        "--logging_steps", "1",
        "--disable_tqdm", "True",
        "--dataloader_num_workers", "0",
    ]  # fmt: skip


def test_loss_falls_with_the_paper_loss(workspace, coco_dev_dir):
    torch.manual_seed(0)
    model = EfficientSamModel.from_pretrained(workspace / "tiny")
    model.vision_encoder.requires_grad_(False)  # keeps the test cheap; the decoder is what must learn here
    processor = EfficientSamProcessor()
    wrapper = EfficientSamForFinetuning(model, processor, num_correction_clicks=1)
    dataset = load_coco_dataset(workspace / "instances.json", coco_dev_dir / "images")
    batch = EfficientSamFinetuningCollator(processor, max_masks_per_image=2, train=False)([dataset[0], dataset[1]])
    optimizer = torch.optim.AdamW([p for p in wrapper.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    losses = []
    for _ in range(4):
        loss = wrapper(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] - 0.1, losses


def test_script_finetunes_evaluates_and_saves_a_loadable_folder(workspace, coco_dev_dir):
    output_dir = workspace / "run"
    metrics = _load_script().main(
        _common_args(workspace, coco_dev_dir, output_dir)
        + [
            "--validation_data", str(workspace / "instances.json"),
            "--validation_image_dir", str(coco_dev_dir / "images"),
            "--do_train", "--do_eval", "--eval_on_start", "--eval_strategy", "no",
            "--max_steps", "4", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2",
            "--box_probability", "1.0", "--learning_rate", "1e-2",
            # Dice alone: with focal (20:1) a random model first learns "background everywhere", which empties the
            # masks and lowers IoU for its first steps; dice moves IoU up from the first step.
            "--focal_weight", "0",
            "--save_strategy", "no",
        ]
    )  # fmt: skip
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    before = [h["eval_miou"] for h in history if "eval_miou" in h]  # --eval_on_start
    assert len(before) == 1 and before[0] > 0
    assert metrics["eval_miou"] > before[0] + 0.05, (before, metrics)

    reloaded = EfficientSamModel.from_pretrained(output_dir)
    EfficientSamProcessor.from_pretrained(output_dir)
    start = EfficientSamModel.from_pretrained(workspace / "tiny")
    moved = [n for n, p in reloaded.state_dict().items() if not torch.equal(p, start.state_dict()[n])]
    assert any(n.startswith("mask_decoder.") for n in moved) and any(n.startswith("vision_encoder.") for n in moved)


def test_resumed_run_equals_uninterrupted_run(workspace, coco_dev_dir):
    args = [
        "--do_train", "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1",
        "--per_device_train_batch_size", "1", "--num_correction_clicks", "1", "--learning_rate", "1e-3",
    ]  # fmt: skip
    script = _load_script()
    full = workspace / "full"
    script.main(_common_args(workspace, coco_dev_dir, full) + args)
    resumed = workspace / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-1", resumed / "checkpoint-1")  # as if the run had stopped after step 1
    script.main(_common_args(workspace, coco_dev_dir, resumed) + args + ["--resume_from_checkpoint", "True"])

    expected, actual = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    after_one = load_file(full / "checkpoint-1" / "model.safetensors")
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert not all(torch.equal(expected[k], after_one[k]) for k in expected)  # step 2 did change the weights
