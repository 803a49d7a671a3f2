"""Official weights: download from a (local file://) URL with a progress bar, git-blob-hash check before unpickling,
cache, and the offline message. No test touches the network."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from efficientsam_hf import checkpoints
from efficientsam_hf.cli import main

IMAGE = "000000000139.jpg"


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A file:// folder laid out like the official repository, with the Ti entry's hash set to its file's hash."""
    weights = tmp_path / "mirror" / "weights"
    weights.mkdir(parents=True)
    payload = weights / "efficient_sam_vitt.pt"
    payload.write_bytes(b"not really a checkpoint\n" * 1000)
    monkeypatch.setenv(checkpoints.BASE_URL_ENV, (tmp_path / "mirror").as_uri())
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HOME", str(tmp_path / "hf"))
    entry = checkpoints.OFFICIAL_CHECKPOINTS["efficientsam-ti"]
    patched = dict(checkpoints.OFFICIAL_CHECKPOINTS)
    patched["efficientsam-ti"] = dataclasses.replace(entry, git_blob_sha1=checkpoints.git_blob_sha1(payload))
    monkeypatch.setattr(checkpoints, "OFFICIAL_CHECKPOINTS", patched)
    return payload


def test_git_blob_sha1_matches_git(tmp_path):
    path = tmp_path / "hello"
    path.write_bytes(b"hello\n")
    assert checkpoints.git_blob_sha1(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`


def test_download_verifies_and_caches(mirror, tmp_path):
    path = checkpoints.official_checkpoint_file("efficientsam-ti")
    assert path.read_bytes() == mirror.read_bytes()
    assert str(path).startswith(str(tmp_path / "hf"))
    mirror.unlink()  # a second call must use the cache, not the URL
    assert checkpoints.official_checkpoint_file("efficientsam-ti") == path


def test_hash_mismatch_is_refused_and_nothing_is_kept(mirror, tmp_path):
    mirror.write_bytes(b"tampered")
    with pytest.raises(checkpoints.CheckpointUnavailableError, match="refusing to load"):
        checkpoints.official_checkpoint_file("efficientsam-ti")
    assert not [p for p in (tmp_path / "hf").rglob("*") if p.is_file()]


def test_offline_message_names_url_and_alternatives(monkeypatch, tmp_path):
    monkeypatch.setenv(checkpoints.BASE_URL_ENV, "file:///nonexistent")
    monkeypatch.setattr("huggingface_hub.constants.HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(checkpoints.CheckpointUnavailableError) as error:
        checkpoints.resolve_model()
    message = str(error.value)
    assert "file:///nonexistent/weights/efficient_sam_vitt.pt" in message
    assert "--checkpoint" in message and "--model" in message


def test_segment_offline_prints_one_line_and_exits_2(coco_dev_dir, tmp_path):
    """The console script, as a new user runs it without network: one clear line, status 2, no traceback."""
    env = {"EFFICIENTSAM_HF_BASE_URL": "file:///nonexistent", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    import os

    result = subprocess.run(
        [sys.executable, "-m", "efficientsam_hf.cli", "segment", str(coco_dev_dir / "images" / IMAGE)]
        + ["--output", str(tmp_path / "out.png")],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--checkpoint" in errors[0] and "efficient_sam_vitt.pt" in errors[0]
    assert not Path(tmp_path / "out.png").exists()


def test_cli_offline_in_process(monkeypatch, tmp_path, capsys, coco_dev_dir):
    monkeypatch.setenv(checkpoints.BASE_URL_ENV, "file:///nonexistent")
    monkeypatch.setattr("huggingface_hub.constants.HF_HOME", str(tmp_path / "hf"))
    status = main(["segment", str(coco_dev_dir / "images" / IMAGE), "--output", str(tmp_path / "o.png")])
    assert status == 2
    assert "pass --checkpoint" in capsys.readouterr().err
