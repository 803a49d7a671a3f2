"""Where the official EfficientSAM weights live, how they are downloaded and verified, and where the converted
folders are cached.

The official checkpoints are plain git blobs (no LFS) in github.com/yformer/EfficientSAM (Apache-2.0), pinned to
one commit. A download is verified by its git blob SHA-1 (`sha1(b"blob <size>\\0" + content)`) before anything is
unpickled, converted with `efficientsam_hf.convert`, and the converted `save_pretrained` folder is cached under the
Hugging Face cache (`$HF_HOME/efficientsam-hf/`), so later runs load it directly.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

OFFICIAL_REPOSITORY = "yformer/EfficientSAM"
OFFICIAL_COMMIT = "d525f622e6f640acf5a0fc37c7ca1f243da5bde0"
# Override to use a mirror (or a local `file://` folder laid out like the repository).
BASE_URL_ENV = "EFFICIENTSAM_HF_BASE_URL"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/{OFFICIAL_REPOSITORY}/{OFFICIAL_COMMIT}"
DEFAULT_MODEL = "efficientsam-ti"


@dataclass(frozen=True)
class OfficialCheckpoint:
    name: str
    path: str  # inside the official repository
    git_blob_sha1: str

    @property
    def url(self) -> str:
        return f"{os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL).rstrip('/')}/{self.path}"


OFFICIAL_CHECKPOINTS = {
    "efficientsam-ti": OfficialCheckpoint(
        "efficientsam-ti", "weights/efficient_sam_vitt.pt", "af883c49e33c68f01107be52df0ecad26a48355f"
    ),
    "efficientsam-s": OfficialCheckpoint(
        "efficientsam-s", "weights/efficient_sam_vits.pt.zip", "fa4e9f05f753e109dbde052f97d37903b833cf53"
    ),
}


class CheckpointUnavailableError(RuntimeError):
    """The official weights could not be fetched; the message says what to pass instead."""


def cache_dir() -> Path:
    """`$HF_HOME/efficientsam-hf` (the Hugging Face cache root, honouring HF_HOME)."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "efficientsam-hf"


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The git object id of a file's content, as `git hash-object` prints it."""
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, destination: Path, expected_git_blob_sha1: str) -> Path:
    """Download `url` with a progress bar into `destination`, atomically, after checking its git blob SHA-1.
    A file that fails the check is deleted and never unpickled."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {destination.name}") as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        actual = git_blob_sha1(partial)
        if actual != expected_git_blob_sha1:
            raise CheckpointUnavailableError(
                f"{url} has git blob SHA-1 {actual}, expected {expected_git_blob_sha1}; refusing to load it."
            )
        os.replace(partial, destination)
        return destination
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def official_checkpoint_file(name: str = DEFAULT_MODEL) -> Path:
    """The verified official checkpoint file for `name` ("efficientsam-ti" or "efficientsam-s"), downloaded once."""
    if name not in OFFICIAL_CHECKPOINTS:
        raise ValueError(f"unknown official model {name!r}; expected one of {sorted(OFFICIAL_CHECKPOINTS)}.")
    checkpoint = OFFICIAL_CHECKPOINTS[name]
    target = cache_dir() / "downloads" / checkpoint.git_blob_sha1 / Path(checkpoint.path).name
    if target.is_file() and git_blob_sha1(target) == checkpoint.git_blob_sha1:
        return target
    try:
        return download(checkpoint.url, target, checkpoint.git_blob_sha1)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise CheckpointUnavailableError(
            f"could not download the official {name} weights from {checkpoint.url} ({error}); "
            "pass --checkpoint PATH (an official .pt / .pt.zip file) or --model FOLDER_OR_HUB_ID instead."
        ) from error


def converted_folder(checkpoint: str | os.PathLike, name: str | None = None) -> Path:
    """Convert `checkpoint` once into the cache (keyed by its content hash) and return the folder."""
    from .convert import convert_checkpoint

    digest = git_blob_sha1(checkpoint)
    folder = cache_dir() / "converted" / f"{name or Path(checkpoint).name.split('.')[0]}-{digest[:12]}"
    if not (folder / "config.json").is_file():
        convert_checkpoint(checkpoint, folder)
    return folder


def resolve_model(model: str | None = None, checkpoint: str | os.PathLike | None = None) -> str:
    """What to pass to `from_pretrained`: `model` itself (a folder or Hub id) if given; else a converted copy of
    `checkpoint`; else the cached conversion of the official EfficientSAM-Ti, downloading it on first use."""
    if model is not None and checkpoint is not None:
        raise ValueError("pass either model or checkpoint, not both.")
    if model is not None:
        return str(model)
    if checkpoint is not None:
        return str(converted_folder(checkpoint))
    official = OFFICIAL_CHECKPOINTS[DEFAULT_MODEL]
    cached = cache_dir() / "converted" / f"{DEFAULT_MODEL}-{official.git_blob_sha1[:12]}"
    if (cached / "config.json").is_file():
        return str(cached)
    return str(converted_folder(official_checkpoint_file(DEFAULT_MODEL), DEFAULT_MODEL))
