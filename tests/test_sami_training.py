"""run_sami_pretraining.py end to end on CPU: the loss falls, an interrupted run resumes to identical weights, the
teacher cache is reused, and the export loads into EfficientSamModel with no missing keys."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import SamVisionConfig, SamVisionModel

from efficientsam_hf import EfficientSamModel
from efficientsam_hf.sami import (
    EfficientSamForSamiPretraining,
    SamiPretrainingDataset,
    SamiTransform,
    collate_sami,
    export_sami_checkpoint,
)
from efficientsam_hf.sami.data import load_image_folder

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "run_sami_pretraining.py"
NUM_IMAGES = 8


def load_script():
    spec = importlib.util.spec_from_file_location("run_sami_pretraining", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def tiny_run_args(images: Path, teacher: Path, output_dir: Path, max_steps: int, save_steps: int, *extra: str):
    """Tiny student (width 32, 2 blocks), tiny decoder, batch 4 of 224 crops, tiny SAM teacher, fp32 CPU."""
    return [
        "--do_train", "--use_cpu", "--report_to", "none", "--seed", "7",
        "--train_dir", str(images), "--output_dir", str(output_dir), "--teacher_name_or_path", str(teacher),
        "--vision_config_overrides", "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,output_channels=32",
        "--config_overrides", "decoder_hidden_size=32,decoder_num_hidden_layers=2,decoder_num_attention_heads=2",
        "--per_device_train_batch_size", "4", "--base_learning_rate", "0.3",
        "--max_steps", str(max_steps), "--save_steps", str(save_steps), "--logging_steps", "1",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def sami_inputs(tmp_path_factory, coco_dev_dir):
    """(folder of 8 COCO dev images as symlinks, tiny random SAM vision teacher folder)."""
    root = tmp_path_factory.mktemp("sami")
    images = root / "images"
    images.mkdir()
    for path in sorted((coco_dev_dir / "images").glob("*.jpg"))[:NUM_IMAGES]:
        (images / path.name).symlink_to(path)
    torch.manual_seed(0)
    config = SamVisionConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=128, output_channels=16,
        window_size=4, global_attn_indexes=[1], mlp_dim=64, num_pos_feats=16, initializer_range=0.02,
    )  # fmt: skip
    SamVisionModel(config).save_pretrained(root / "teacher")
    return images, root / "teacher"


@pytest.fixture(scope="module")
def full_run(sami_inputs, tmp_path_factory):
    """An uninterrupted 12-step run (6 epochs of 2 steps) with checkpoints every 5 steps, teacher cached."""
    torch.set_num_threads(2)
    images, teacher = sami_inputs
    output_dir = tmp_path_factory.mktemp("full") / "out"
    metrics = load_script().main(tiny_run_args(images, teacher, output_dir, 12, 5, "--precompute_teacher_features"))
    return output_dir, metrics


def logged_losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def test_loss_falls_over_a_short_run(full_run, sami_inputs):
    """The trained model reconstructs a fixed batch (epoch-0 crops, masks and cached targets of all 8 images) better
    than the untrained one; per-step training losses are too crop-dependent to compare on 12 steps."""
    output_dir, metrics = full_run
    images, _ = sami_inputs
    losses = logged_losses(output_dir)
    assert len(losses) == 12 and metrics["train_peak_rss_mb"] > 0
    trained = EfficientSamForSamiPretraining.from_pretrained(output_dir).eval()
    torch.manual_seed(7)
    untrained = EfficientSamForSamiPretraining(trained.config).eval()
    dataset = SamiPretrainingDataset(
        load_image_folder(images), SamiTransform(), 196, seed=3,
        teacher_features=datasets.load_from_disk(str(output_dir / "teacher_features" / "shard-00000")),
    )  # fmt: skip
    batch = collate_sami([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        before, after = untrained(**batch).loss.item(), trained(**batch).loss.item()
    print(f"fixed-batch loss before {before:.4f} after {after:.4f}; logged", [round(x, 4) for x in losses])
    assert after < 0.95 * before, (before, after)


def test_interrupted_run_resumes_to_the_same_weights(full_run, sami_inputs, tmp_path):
    """A run that stopped after step 5 (its checkpoint-5, copied) resumes to the uninterrupted run's weights; the
    resumed epoch starts mid-epoch, so batch skipping, sampler order and per-sample augmentation all matter."""
    output_dir, _ = full_run
    images, teacher = sami_inputs
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(output_dir / "checkpoint-5", resumed_dir / "checkpoint-5")
    extra = ("--precompute_teacher_features", "--teacher_features_cache_dir", str(output_dir / "teacher_features"))
    load_script().main(tiny_run_args(images, teacher, resumed_dir, 12, 5, *extra, "--resume_from_checkpoint", "True"))
    expected, resumed = load_file(output_dir / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    assert expected.keys() == resumed.keys()
    differences = {key: (expected[key] - resumed[key]).abs().max().item() for key in expected}
    assert max(differences.values()) == 0.0, differences
    assert logged_losses(resumed_dir)[-7:] == logged_losses(output_dir)[-7:]
    # sanity: the weights did move, so equality is not trivial
    start = load_file(output_dir / "checkpoint-5" / "model.safetensors")
    assert any(not torch.equal(start[key], expected[key]) for key in expected)


def test_export_loads_into_efficientsam_model_with_no_missing_keys(full_run, tmp_path):
    output_dir, _ = full_run
    exported = export_sami_checkpoint(output_dir, tmp_path / "efficientsam")
    model, info = EfficientSamModel.from_pretrained(exported, output_loading_info=True)
    assert info["missing_keys"] == set() or not info["missing_keys"], info
    assert not info["unexpected_keys"] and not info["mismatched_keys"], info
    sami = EfficientSamForSamiPretraining.from_pretrained(output_dir)
    for key, value in sami.vision_encoder.state_dict().items():
        assert torch.equal(model.vision_encoder.state_dict()[key], value), key
    # the exported model segments at 1024
    out = model(pixel_values=torch.randn(1, 3, 1024, 1024), input_points=torch.tensor([[[[500.0, 400.0]]]]))
    assert out.pred_masks.shape[-2:] == (256, 256)
    assert not list(tmp_path.glob("*.tmp"))
