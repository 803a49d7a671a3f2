"""Shared fixtures: where ../shared is, tiny random models, and real-size conversions done once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from efficientsam_hf import EfficientSamConfig, EfficientSamModel

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
REFERENCE_DIR = SHARED_DIR / "reference"
COCO_DEV_DIR = SHARED_DIR / "data" / "coco_val2017_dev"


def require_shared(path: Path = SHARED_DIR) -> Path:
    """Skip the calling test with a reason when ../shared (or a file in it) is absent."""
    if not path.exists():
        pytest.skip(f"{path} is not available (the ../shared folder next to the repository)")
    return path


def tiny_config(**overrides) -> EfficientSamConfig:
    """A small random EfficientSAM (width 32, 2 blocks) with the real 1024 input and 256x256 low-res masks."""
    kwargs = dict(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, output_channels=32),
        prompt_encoder_config=dict(hidden_size=32),
        mask_decoder_config=dict(
            hidden_size=32, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32, upscaling_dims=[16, 8]
        ),
    )
    kwargs.update(overrides)
    return EfficientSamConfig(**kwargs)


@pytest.fixture(scope="session")
def tiny_model() -> EfficientSamModel:
    torch.manual_seed(0)
    return EfficientSamModel(tiny_config()).eval()


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory, tiny_model) -> Path:
    """`tiny_model` and a default `EfficientSamProcessor`, saved with `save_pretrained` into one folder."""
    from efficientsam_hf import EfficientSamProcessor

    folder = tmp_path_factory.mktemp("tiny-efficientsam")
    tiny_model.save_pretrained(folder)
    EfficientSamProcessor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def coco_dev_dir() -> Path:
    return require_shared(COCO_DEV_DIR)


def _converted(size: str):
    from efficientsam_hf.convert import load_official_checkpoint

    checkpoint = require_shared(REFERENCE_DIR / f"efficient_sam_{size}_synthetic_fp16.pt")
    reference = np.load(require_shared(REFERENCE_DIR / f"efficientsam_{size}_reference.npz"))
    return load_official_checkpoint(checkpoint), reference


@pytest.fixture(scope="session")
def converted_vitt():
    """(EfficientSamModel converted from the synthetic Ti checkpoint, its reference npz)."""
    return _converted("vitt")


@pytest.fixture(scope="session")
def converted_vits():
    """(EfficientSamModel converted from the synthetic S checkpoint, its reference npz)."""
    return _converted("vits")
