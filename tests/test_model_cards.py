"""Model cards: Hub metadata that huggingface_hub parses, usage code that runs, and the converter writing/uploading
the card as README.md (the upload is faked: no network)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image

from efficientsam_hf import EfficientSamModel, convert

from conftest import REPO_ROOT

CARDS = {"efficientsam-ti": 192, "efficientsam-s": 384}


def _card_path(name):
    return REPO_ROOT / "model_cards" / f"{name}.md"


@pytest.fixture(scope="module")
def tiny_folder(tiny_model_folder):
    return tiny_model_folder


@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_metadata_and_sections(name):
    card = ModelCard.load(_card_path(name))
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "mask-generation"
    assert "efficientsam" in data["tags"] and data["datasets"]
    for section in ("## Usage", "## Provenance", "## Results (as reported by the paper)", "## Limitations"):
        assert section in card.text
    assert "d525f622e6f640acf5a0fc37c7ca1f243da5bde0" in card.text and "efficientsam-hf convert" in card.text
    assert f"hidden size {CARDS[name]}" in card.text


@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_parameter_counts_match_configs(name):
    from efficientsam_hf import EfficientSamConfig

    config = getattr(EfficientSamConfig, name.replace("-", "_"))()
    with torch.device("meta"):
        model = EfficientSamModel(config)
    total = sum(p.numel() for p in model.parameters())
    assert f"{total:,}" in _card_path(name).read_text()


def test_card_usage_code_runs(tiny_folder, tmp_path, monkeypatch):
    """The Python block of each card, with the Hub id replaced by a tiny local folder."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save("example.jpg")
    for name in CARDS:
        blocks = re.findall(r"```python\n(.*?)```", _card_path(name).read_text(), flags=re.S)
        assert len(blocks) == 1
        code = blocks[0].replace(f'"efficientsam-hf/{name}"', repr(str(tiny_folder)))
        code = code.replace("points_per_crop=16", "points_per_crop=4")  # a coarser grid keeps the test fast
        assert str(tiny_folder) in code and "points_per_crop=4" in code
        namespace = {}
        exec(compile(code, f"{name}.md", "exec"), namespace)
        assert namespace["best"].shape == (120, 160)
        assert namespace["prediction"].masks.shape == (1, 3, 120, 160)


def test_converter_writes_and_uploads_card(tiny_folder, tmp_path, monkeypatch):
    # A model loaded with from_pretrained, so the converter's exact reload check compares like with like.
    monkeypatch.setattr(
        convert, "load_official_checkpoint", lambda path: EfficientSamModel.from_pretrained(tiny_folder).eval()
    )
    uploaded = {}

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            uploaded["repo"] = repo_id

        def upload_folder(self, folder_path, repo_id, **kwargs):
            uploaded["readme"] = (tmp_path / "out" / "README.md").read_text()

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    card_path = _card_path("efficientsam-ti")
    folder = convert.convert_checkpoint(
        tmp_path / "unused.pt", tmp_path / "out", push_to_hub="me/efficientsam-ti", model_card=card_path
    )
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "mask-generation"
    assert uploaded == {"repo": "me/efficientsam-ti", "readme": card_path.read_text()}
