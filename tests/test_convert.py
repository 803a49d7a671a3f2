"""Official checkpoint -> safetensors folder: key mapping, refusal of bad checkpoints, zip handling, the CLI."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from efficientsam_hf import EfficientSamModel
from efficientsam_hf.convert import (
    ConversionError,
    convert_checkpoint,
    convert_state_dict,
    load_official_checkpoint,
    main,
    read_official_state_dict,
    rename_key,
)

from conftest import REFERENCE_DIR, require_shared

TI_CHECKPOINT = REFERENCE_DIR / "efficient_sam_vitt_synthetic_fp16.pt"


@pytest.fixture(scope="module")
def official_state_dict():
    return read_official_state_dict(require_shared(TI_CHECKPOINT))


def test_every_official_key_has_a_rule(official_state_dict):
    assert len(official_state_dict) == 278
    unmapped = [key for key in official_state_dict if rename_key(key) is None]
    assert unmapped == []
    assert len({rename_key(key) for key in official_state_dict}) == 278  # the mapping is one-to-one
    assert all(value.dtype == torch.float32 for value in official_state_dict.values())


def test_examples_of_the_mapping():
    assert rename_key("image_encoder.blocks.11.mlp.fc2.bias") == "vision_encoder.layers.11.mlp.lin2.bias"
    assert (
        rename_key("mask_decoder.iou_prediction_head.layers.1.0.weight")
        == "mask_decoder.iou_prediction_head.layers.0.weight"
    )
    assert rename_key("mask_decoder.final_output_upscaling_layers.0.1.weight") == "mask_decoder.upscale_norms.0.weight"
    assert rename_key("image_encoder.cls_token") is None


def test_bad_checkpoints_are_refused_with_every_key_listed(official_state_dict):
    model = EfficientSamModel(load_official_checkpoint(TI_CHECKPOINT).config)
    broken = dict(official_state_dict)
    del broken["mask_decoder.iou_token.weight"]
    broken["image_encoder.extra.weight"] = torch.zeros(1)
    broken["prompt_encoder.point_embeddings.weight"] = torch.zeros(1, 128)
    with pytest.raises(ConversionError) as info:
        convert_state_dict(broken, model)
    message = str(info.value)
    assert "unexpected keys: image_encoder.extra.weight" in message
    assert "prompt_encoder.point_embeddings.weight: (1, 128) (expected (1, 256))" in message
    assert "missing keys: mask_decoder.iou_token.weight" in message


def test_zip_wrapped_checkpoint_and_size_inference(tmp_path):
    """The ViT-S release is a .pt inside a .zip; the size comes from the tensors."""
    checkpoint = require_shared(REFERENCE_DIR / "efficient_sam_vits_synthetic_fp16.pt")
    archive = tmp_path / "efficient_sam_vits.pt.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(checkpoint, "efficient_sam_vits.pt")
    state_dict = read_official_state_dict(archive)
    assert state_dict["image_encoder.pos_embed"].shape == (1, 197, 384)
    model = load_official_checkpoint(archive)
    assert (model.config.vision_config.hidden_size, model.config.vision_config.num_attention_heads) == (384, 6)


class NotWeights:
    """Any non-tensor object: a weights-only load must refuse it rather than run its pickle."""


def test_pickled_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "object": NotWeights()}, path)
    with pytest.raises(ConversionError, match="not a readable weights-only torch checkpoint"):
        read_official_state_dict(path)


def test_convert_writes_a_verified_folder(tmp_path, converted_vitt):
    output = convert_checkpoint(require_shared(TI_CHECKPOINT), tmp_path / "efficientsam-ti")
    files = {path.name for path in output.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "processor_config.json",
        "modeling_efficientsam.py",
        "processing_efficientsam.py",
    } <= files
    assert not list(tmp_path.glob(".efficientsam-ti.*"))  # the staging folder is gone
    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == "efficientsam" and config["vision_config"]["hidden_size"] == 192
    reloaded = EfficientSamModel.from_pretrained(output)
    reference_model, _ = converted_vitt
    for name, tensor in reference_model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name


def test_cli_main_reports_errors_with_status_2(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--output", str(tmp_path / "out")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
