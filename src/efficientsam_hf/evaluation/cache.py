"""Per-image prediction records on disk, so an interrupted evaluation resumes where it stopped.

One JSON file per image, written atomically (temporary file + `os.replace`), next to a fingerprint of what
produced them (model, settings, data). A cache made under other settings is never mixed in silently.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

FINGERPRINT_FILE = "fingerprint.json"


def write_json_atomic(path: str | os.PathLike, obj, indent: int | None = None) -> None:
    """Write JSON so that a reader sees either the old file or the complete new one, never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PredictionCache:
    """Image id -> prediction record, stored under `directory`.

    Args:
        directory: where the records live.
        fingerprint: JSON-able description of the run; an existing cache with another fingerprint raises
            `ValueError`; with `overwrite` every existing record is deleted first.
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: dict, overwrite: bool = False):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        fingerprint = json.loads(json.dumps(fingerprint))  # normalise tuples etc. as they will be read back
        path = self.directory / FINGERPRINT_FILE
        if overwrite:
            for record in self.directory.glob("image_*.json"):
                record.unlink()
        elif path.exists() and json.loads(path.read_text()) != fingerprint:
            raise ValueError(
                f"The prediction cache in {self.directory} was made by a different run (model, settings or data "
                "differ); pass overwrite_cache=True (--overwrite_cache) or use another output_dir."
            )
        write_json_atomic(path, fingerprint, indent=2)

    def _path(self, image_id: int) -> Path:
        return self.directory / f"image_{int(image_id)}.json"

    def get(self, image_id: int) -> dict | None:
        path = self._path(image_id)
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def put(self, image_id: int, record: dict) -> None:
        write_json_atomic(self._path(image_id), record)

    def __contains__(self, image_id: int) -> bool:
        return self._path(image_id).exists()
