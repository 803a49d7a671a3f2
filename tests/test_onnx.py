"""ONNX export: graphs checked, dynamic axes, onnxruntime equal to PyTorch, the README example, failure paths."""

from __future__ import annotations

import builtins
import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from efficientsam_hf import EfficientSamModel, EfficientSamProcessor
from efficientsam_hf.onnx_export import (
    DECODER_FILE,
    ENCODER_FILE,
    INSTALL_HINT,
    REPORT_FILE,
    OnnxVerificationError,
    StagedGroupNorm,
    add_arguments,
    export_onnx,
    main,
    run,
    verify_onnx,
)

from conftest import REPO_ROOT, tiny_config

onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install 'efficientsam-hf[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install 'efficientsam-hf[onnx]'")

EXAMPLE = REPO_ROOT / "README.md"


@pytest.fixture(scope="module")
def lively_model() -> EfficientSamModel:
    """Tiny model with PyTorch-default inits and non-zero biases: outputs of order 0.1-1 (the HF init gives ~1e-4
    mask logits, against which a 1e-4 tolerance would prove nothing)."""
    torch.manual_seed(0)
    model = EfficientSamModel(tiny_config()).eval()
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.reset_parameters()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter += 0.05 * torch.randn(parameter.shape, generator=generator)
    return model


@pytest.fixture(scope="module")
def tiny_export(lively_model, tmp_path_factory):
    """Export from a save_pretrained folder (the CLI's usual input), once for the module."""
    model_dir = tmp_path_factory.mktemp("tiny_model")
    lively_model.save_pretrained(model_dir)
    output_dir = tmp_path_factory.mktemp("tiny_onnx")
    return export_onnx(model_dir, output_dir), output_dir


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_export_writes_checked_graphs_with_dynamic_axes(tiny_export):
    result, output_dir = tiny_export
    encoder = onnx.load(output_dir / ENCODER_FILE)
    decoder = onnx.load(output_dir / DECODER_FILE)
    onnx.checker.check_model(encoder, full_check=True)
    onnx.checker.check_model(decoder, full_check=True)
    assert [_dims(i) for i in encoder.graph.input] == [["batch", 3, 1024, 1024]]
    assert [_dims(o) for o in encoder.graph.output] == [["batch", 32, 64, 64]]
    assert {i.name: _dims(i) for i in decoder.graph.input} == {
        "image_embeddings": ["batch", 32, 64, 64],
        "input_points": ["batch", "queries", "points", 2],
        "input_labels": ["batch", "queries", "points"],
    }
    assert {o.name: _dims(o) for o in decoder.graph.output} == {
        "iou_scores": ["batch", "queries", 3],
        "pred_masks": ["batch", "queries", 3, 256, 256],
    }
    report = json.loads((output_dir / REPORT_FILE).read_text())
    assert set(report["max_abs_error"]) == {"image_embeddings", "iou_scores", "pred_masks"}
    assert result.worst_error < 1e-4
    assert min(result.max_abs_value.values()) > 0.05  # the comparison is against outputs of a real size
    assert not [p.name for p in output_dir.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_onnxruntime_equals_pytorch_on_untraced_shapes(tiny_export, lively_model):
    """Decoder at batch 3, 4 queries, 7 points (more than the 6 kept), a negative coordinate with a real label.
    (The encoder's untraced batch 1 is checked by the export's own verification.)"""
    _, output_dir = tiny_export
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        embedding = lively_model.get_image_embeddings(torch.randn(1, 3, 1024, 1024, generator=generator))
    embeddings = torch.cat([embedding, embedding.flip(-1), embedding.flip(-2)])
    points = torch.rand(3, 4, 7, 2, generator=generator) * 1024
    labels = torch.randint(-1, 4, (3, 4, 7), generator=generator)
    labels[..., 0] = 1
    points[0, 0, 1] = torch.tensor([-3.0, 200.0])  # a negative coordinate makes a padding point, label or not
    decoder = ort.InferenceSession(str(output_dir / DECODER_FILE), providers=["CPUExecutionProvider"])
    iou_scores, pred_masks = decoder.run(
        None,
        {"image_embeddings": embeddings.numpy(), "input_points": points.numpy(), "input_labels": labels.numpy()},
    )
    with torch.no_grad():
        expected = lively_model(image_embeddings=embeddings, input_points=points, input_labels=labels)
    assert pred_masks.shape == (3, 4, 3, 256, 256) and iou_scores.shape == (3, 4, 3)
    np.testing.assert_allclose(iou_scores, expected.iou_scores.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(pred_masks, expected.pred_masks.numpy(), rtol=0, atol=1e-4)


def test_verification_catches_a_model_that_differs(tiny_export, lively_model):
    _, output_dir = tiny_export
    changed = copy.deepcopy(lively_model)
    with torch.no_grad():
        changed.mask_decoder.iou_prediction_head.proj_out.bias += 1e-3
    with pytest.raises(OnnxVerificationError, match="iou_scores"):
        verify_onnx(changed, output_dir)


def test_staged_group_norm_is_group_norm():
    group_norm = torch.nn.GroupNorm(2, 8, eps=1e-6)
    with torch.no_grad():
        group_norm.weight.normal_()
        group_norm.bias.normal_()
    features = torch.randn(3, 8, 16, 16) * 3 + 1
    torch.testing.assert_close(StagedGroupNorm(group_norm)(features), group_norm(features), rtol=0, atol=1e-5)


def test_readme_example_runs_on_onnxruntime(tiny_export, lively_model, tmp_path, monkeypatch):
    """The README's onnxruntime code block, run as written (paths swapped), against the PyTorch model."""
    from PIL import Image

    _, output_dir = tiny_export
    blocks = re.findall(r"```python\n(.*?)```", EXAMPLE.read_text(), flags=re.DOTALL)
    code = [block for block in blocks if "import onnxruntime" in block]
    assert len(code) == 1
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (603, 1072, 3), dtype=np.uint8))
    image.save(tmp_path / "dogs.jpg")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "efficientsam-ti-onnx").symlink_to(output_dir)
    namespace: dict = {}
    exec(compile(code[0], str(EXAMPLE), "exec"), namespace)

    processor = EfficientSamProcessor()
    inputs = processor(
        Image.open("dogs.jpg").convert("RGB"), input_points=[[[[580, 350], [650, 350]]]], input_labels=[[[1, 1]]]
    )
    with torch.no_grad():
        expected = lively_model(
            **{k: v for k, v in inputs.items() if k not in ("original_sizes", "reshaped_input_sizes")}
        )
    np.testing.assert_allclose(namespace["iou_scores"], expected.iou_scores.numpy(), rtol=0, atol=1e-4)
    logits = processor.post_process_masks(expected.pred_masks, inputs["original_sizes"], binarize=False)[0]
    best = expected.iou_scores[0, 0].argmax()
    decided = (logits[0, best].abs() > 1e-3).numpy()  # pixels whose sign a 1e-4 error cannot flip
    assert namespace["best_mask"].shape == (603, 1072)
    np.testing.assert_array_equal(namespace["best_mask"].numpy()[decided], (logits[0, best] > 0).numpy()[decided])
    assert namespace["box_masks"][0].shape == (1, 3, 603, 1072)


def test_bad_arguments_name_what_was_expected(tmp_path):
    with pytest.raises(TypeError, match="model_or_path"):
        export_onnx(123, tmp_path)
    with pytest.raises(FileNotFoundError, match="model_or_path"):
        export_onnx(tmp_path / "missing", tmp_path)
    with pytest.raises(ValueError, match="atol"):
        export_onnx("unused", tmp_path, atol=0)
    with pytest.raises(ValueError, match="opset_version"):
        export_onnx("unused", tmp_path, opset_version=11)


def test_cli_fails_when_verification_fails_and_writes_nothing(lively_model, tmp_path, capsys, monkeypatch):
    """Exit code 2 and the message; the graphs stay in staging, which is removed. (Real detection of a mismatch is
    tested above with `verify_onnx`; here it is replaced to keep the test short.)"""
    import efficientsam_hf.onnx_export as onnx_export

    def failing_verification(*args, **kwargs):
        raise OnnxVerificationError("onnxruntime differs from PyTorch by 1 > atol 0.0001")

    monkeypatch.setattr(onnx_export, "verify_onnx", failing_verification)
    model_dir, output_dir = tmp_path / "model", tmp_path / "onnx"
    lively_model.save_pretrained(model_dir)
    assert main(["--model", str(model_dir), "--output", str(output_dir)]) == 2
    assert "onnxruntime differs from PyTorch" in capsys.readouterr().err
    assert list(output_dir.iterdir()) == []


def test_cli_without_onnx_says_how_to_install(monkeypatch, capsys, tmp_path):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxruntime"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    import argparse

    args = add_arguments(argparse.ArgumentParser()).parse_args(["--model", "m", "--output", str(tmp_path / "o")])
    assert run(args) == 1
    assert "pip install 'efficientsam-hf[onnx]'" in capsys.readouterr().err
    with pytest.raises(ImportError, match=re.escape(INSTALL_HINT)):
        export_onnx("m", tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_export_converted_ti_equals_pytorch(converted_vitt, tmp_path):
    model, _ = converted_vitt
    result = export_onnx(model, tmp_path)
    print(f"EfficientSAM-Ti (synthetic) onnxruntime vs PyTorch max abs error: {result.max_abs_error}")
    assert result.worst_error < 1e-4
    assert result.max_abs_value["pred_masks"] > 1.0  # logits of a real size: the tolerance means something
    assert Path(result.decoder_path).stat().st_size > 1e6 and Path(result.encoder_path).stat().st_size > 1e7
