"""Every Python block of the README runs (against a tiny random model folder and a real COCO photo)."""

from __future__ import annotations

import re

import pytest

from conftest import COCO_DEV_DIR, REPO_ROOT, require_shared

# The onnxruntime example needs an exported model; tests/test_onnx.py runs it and checks its numbers.
BLOCKS = [
    block
    for block in re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    if "import onnxruntime" not in block
]


@pytest.fixture(scope="module")
def model_folder(tiny_model_folder):
    return tiny_model_folder


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, model_folder):
    photo = require_shared(COCO_DEV_DIR / "images" / "000000000139.jpg")
    code = BLOCKS[index].replace("path/to/efficientsam-ti", str(model_folder)).replace("photo.jpg", str(photo))
    exec(compile(code, f"README.md[python block {index}]", "exec"), {"__name__": "__readme__"})
