"""EfficientSamModel on a tiny random config: PreTrainedModel features, shapes, and input validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskGeneration

from efficientsam_hf import EfficientSamConfig, EfficientSamModel, EfficientSamVisionConfig, EfficientSamVisionModel

from conftest import tiny_config


@pytest.fixture(scope="module")
def pixel_values():
    return torch.randn(2, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def embeddings(tiny_model, pixel_values):
    return tiny_model.get_image_embeddings(pixel_values)


POINTS = torch.tensor([[[[100.0, 200.0], [500.0, 600.0]]], [[[900.0, 30.0], [-1.0, -1.0]]]])
LABELS = torch.tensor([[[1, 0]], [[1, -1]]])


def test_output_shapes_match_sam(tiny_model, embeddings):
    output = tiny_model(image_embeddings=embeddings, input_points=POINTS, input_labels=LABELS)
    assert output.iou_scores.shape == (2, 1, 3)
    assert output.pred_masks.shape == (2, 1, 3, 256, 256)
    single = tiny_model(image_embeddings=embeddings, input_points=POINTS, input_labels=LABELS, multimask_output=False)
    assert single.iou_scores.shape == (2, 1, 1)
    assert single.pred_masks.shape == (2, 1, 1, 256, 256)
    assert embeddings.shape == (2, 32, 64, 64)


def test_boxes_equal_two_corner_points(tiny_model, embeddings):
    boxes = torch.tensor([[[100.0, 150.0, 400.0, 500.0]], [[10.0, 20.0, 1000.0, 900.0]]])
    corners = boxes.reshape(2, 1, 2, 2)
    labels = torch.tensor([2, 3]).expand(2, 1, 2)
    by_box = tiny_model(image_embeddings=embeddings, input_boxes=boxes)
    by_points = tiny_model(image_embeddings=embeddings, input_points=corners, input_labels=labels)
    torch.testing.assert_close(by_box.pred_masks, by_points.pred_masks, rtol=0, atol=0)
    both = tiny_model(image_embeddings=embeddings, input_boxes=boxes, input_points=POINTS, input_labels=LABELS)
    assert both.pred_masks.shape == (2, 1, 3, 256, 256)


def test_padding_boxes_become_padding_points(tiny_model, embeddings):
    boxes = torch.tensor([[[100.0, 150.0, 400.0, 500.0], [-1.0, -1.0, -1.0, -1.0]]]).expand(2, 2, 4)
    points = torch.tensor([[[[300.0, 300.0]], [[600.0, 700.0]]]]).expand(2, 2, 1, 2)
    sparse = tiny_model.get_prompt_embeddings(points, None, boxes)
    with_box = tiny_model(image_embeddings=embeddings, input_boxes=boxes, input_points=points)
    points_only = tiny_model(image_embeddings=embeddings, input_points=points[:, 1:])
    # The padded box adds padding points, exactly like the official padding of a query's unused points.
    torch.testing.assert_close(with_box.pred_masks[:, 1], points_only.pred_masks[:, 0], rtol=0, atol=1e-5)
    assert sparse.shape == (2, 2, 6, 32)


def test_batch_of_two_equals_two_single_calls(tiny_model, pixel_values):
    batched = tiny_model(pixel_values=pixel_values, input_points=POINTS, input_labels=LABELS)
    for index in range(2):
        single = tiny_model(
            pixel_values=pixel_values[index : index + 1],
            input_points=POINTS[index : index + 1],
            input_labels=LABELS[index : index + 1],
        )
        torch.testing.assert_close(batched.pred_masks[index], single.pred_masks[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(batched.iou_scores[index], single.iou_scores[0], rtol=0, atol=1e-5)


def test_many_queries_equal_one_query_at_a_time(tiny_model, embeddings):
    """Sharing the image-side work across queries must not change any query's result."""
    points = torch.rand(1, 5, 3, 2, generator=torch.Generator().manual_seed(3)) * 1000
    labels = torch.tensor([[1, 0, 1]]).expand(1, 5, 3)
    together = tiny_model(image_embeddings=embeddings[:1], input_points=points, input_labels=labels)
    for query in range(5):
        alone = tiny_model(
            image_embeddings=embeddings[:1], input_points=points[:, query : query + 1], input_labels=labels[:, :1]
        )
        torch.testing.assert_close(together.pred_masks[:, query], alone.pred_masks[:, 0], rtol=0, atol=1e-5)


def test_default_labels_are_positive_and_negative_coordinates_pad(tiny_model, embeddings):
    explicit = tiny_model(
        image_embeddings=embeddings, input_points=POINTS, input_labels=torch.tensor([[[1, 1]], [[1, -1]]])
    )
    implicit = tiny_model(image_embeddings=embeddings, input_points=POINTS)
    torch.testing.assert_close(explicit.pred_masks, implicit.pred_masks, rtol=0, atol=0)


def test_sdpa_and_eager_agree(pixel_values):
    torch.manual_seed(0)
    model = EfficientSamModel(tiny_config()).eval()
    sdpa = model(pixel_values=pixel_values[:1], input_points=POINTS[:1], input_labels=LABELS[:1])
    model.set_attn_implementation("eager")
    eager = model(pixel_values=pixel_values[:1], input_points=POINTS[:1], input_labels=LABELS[:1])
    torch.testing.assert_close(sdpa.pred_masks, eager.pred_masks, rtol=0, atol=1e-4)
    assert model.config.mask_decoder_config._attn_implementation == "eager"


def test_hidden_states_and_attentions(tiny_model, pixel_values):
    output = tiny_model(
        pixel_values=pixel_values[:1],
        input_points=POINTS[:1],
        input_labels=LABELS[:1],
        output_hidden_states=True,
        output_attentions=True,
    )
    assert len(output.vision_hidden_states) == 3  # embeddings + 2 blocks
    assert all(h.shape == (1, 64, 64, 32) for h in output.vision_hidden_states)
    assert len(output.vision_attentions) == 2
    attention = output.vision_attentions[0]
    assert attention.shape == (1, 2, 4096, 4096)
    torch.testing.assert_close(attention.sum(-1), torch.ones(1, 2, 4096))
    assert tiny_model(pixel_values=pixel_values[:1], input_points=POINTS[:1]).vision_hidden_states is None


def test_model_built_under_inference_mode_runs(embeddings):
    with torch.inference_mode():
        model = EfficientSamModel(tiny_config()).eval()
        first = model(image_embeddings=embeddings, input_points=POINTS)
        second = model(image_embeddings=embeddings, input_points=POINTS)
    torch.testing.assert_close(first.pred_masks, second.pred_masks, rtol=0, atol=0)


def test_return_dict_false_gives_tuple(tiny_model, embeddings):
    output = tiny_model(image_embeddings=embeddings, input_points=POINTS, return_dict=False)
    assert isinstance(output, tuple) and output[0].shape == (2, 1, 3)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = EfficientSamModel(tiny_config()).train()
    pixel_values = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))

    def gradients():
        model.zero_grad()
        output = model(pixel_values=pixel_values, input_points=POINTS[:1], input_labels=LABELS[:1])
        (output.pred_masks.square().mean() + output.iou_scores.sum()).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.activation_checkpointing_enable()  # transformers v5 name of gradient_checkpointing_enable
    assert model.vision_encoder.layers[0].gradient_checkpointing
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys()
    assert any(name.startswith("vision_encoder.layers.0") for name in plain)
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_forward_runs(pixel_values):
    torch.manual_seed(0)
    model = EfficientSamModel(tiny_config()).eval().to(torch.bfloat16)
    output = model(pixel_values=pixel_values[:1].bfloat16(), input_points=POINTS[:1], input_labels=LABELS[:1])
    assert output.pred_masks.dtype == torch.bfloat16
    assert torch.isfinite(output.pred_masks.float()).all()


def test_save_load_round_trip_safetensors(tmp_path, tiny_model, embeddings):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = EfficientSamModel.from_pretrained(tmp_path).eval()
    for name, tensor in tiny_model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    before = tiny_model(image_embeddings=embeddings, input_points=POINTS)
    after = reloaded(image_embeddings=embeddings, input_points=POINTS)
    torch.testing.assert_close(before.pred_masks, after.pred_masks, rtol=0, atol=0)


def test_auto_classes(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), EfficientSamConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), EfficientSamModel)
    assert isinstance(AutoModelForMaskGeneration.from_pretrained(tmp_path), EfficientSamModel)
    vision = EfficientSamVisionModel(
        EfficientSamVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    vision.save_pretrained(tmp_path / "vision")
    assert isinstance(AutoModel.from_pretrained(tmp_path / "vision"), EfficientSamVisionModel)


def test_vision_model_weights_load_into_full_model(tmp_path):
    config = tiny_config()
    vision = EfficientSamVisionModel(config.vision_config)
    full = EfficientSamModel(config)
    missing, unexpected = full.load_state_dict(vision.state_dict(), strict=False)
    assert not unexpected
    assert all(not key.startswith("vision_encoder.") for key in missing)


def test_trust_remote_code_folder_loads_without_the_package(tmp_path, tiny_model, embeddings):
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_efficientsam.EfficientSamModel"
    assert (tmp_path / "modeling_efficientsam.py").is_file()
    torch.save(embeddings, tmp_path / "embeddings.pt")
    script = f"""
import sys
sys.modules["efficientsam_hf"] = None  # the package is not importable in this process
import torch
from transformers import AutoModel
model = AutoModel.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
out = model(image_embeddings=torch.load({str(tmp_path / "embeddings.pt")!r}), input_points=torch.tensor({POINTS.tolist()}))
torch.save(out.pred_masks, {str(tmp_path / "remote.pt")!r})
"""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)
    expected = tiny_model(image_embeddings=embeddings, input_points=POINTS).pred_masks
    torch.testing.assert_close(torch.load(tmp_path / "remote.pt"), expected, rtol=0, atol=0)


# -- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "exactly one of pixel_values or image_embeddings"),
        (
            {"input_points": torch.rand(2, 1, 2)},
            ValueError,
            r"input_points must have shape \(batch_size, point_batch_size",
        ),
        ({"input_points": torch.rand(2, 1, 2, 3)}, ValueError, "input_points must have shape"),
        (
            {"input_points": torch.ones(2, 1, 2, 2, dtype=torch.long)},
            TypeError,
            "input_points must be a floating-point",
        ),
        ({"input_points": [[[[1.0, 2.0]]]]}, TypeError, "input_points must be a torch.Tensor"),
        ({"input_points": torch.full((2, 1, 1, 2), float("nan"))}, ValueError, "NaN or infinite"),
        ({"input_points": torch.full((2, 1, 1, 2), 2000.0)}, ValueError, "1024x1024 model frame"),
        (
            {"input_points": torch.rand(3, 1, 1, 2)},
            ValueError,
            r"batch size \(3\) must equal the number of images \(2\)",
        ),
        ({"input_points": torch.rand(2, 0, 1, 2)}, ValueError, "must not be empty"),
        ({"input_points": torch.rand(2, 1, 0, 2)}, ValueError, "must not be empty"),
        (
            {"input_points": torch.rand(2, 1, 2, 2), "input_labels": torch.ones(2, 1, 3, dtype=torch.long)},
            ValueError,
            "input_labels must have shape",
        ),
        ({"input_points": torch.rand(2, 1, 2, 2), "input_labels": torch.ones(2, 1, 2)}, TypeError, "integer tensor"),
        (
            {"input_points": torch.rand(2, 1, 2, 2), "input_labels": torch.full((2, 1, 2), 7)},
            ValueError,
            r"input_labels must be in",
        ),
        ({"input_labels": torch.ones(2, 1, 2, dtype=torch.long)}, ValueError, "without input_points"),
        ({"input_boxes": torch.tensor([[[10.0, 10.0, 5.0, 20.0]]]).expand(2, 1, 4)}, ValueError, "x1 >= x0"),
        (
            {"input_boxes": torch.rand(2, 4)},
            ValueError,
            r"input_boxes must have shape \(batch_size, point_batch_size, 4\)",
        ),
        (
            {
                "input_boxes": torch.tensor([10.0, 10.0, 20.0, 20.0]).expand(2, 2, 4),
                "input_points": torch.rand(2, 1, 1, 2),
            },
            ValueError,
            "same \\(batch_size, point_batch_size\\)",
        ),
        (
            {"input_points": torch.rand(2, 1, 1, 2), "input_masks": torch.zeros(2, 256, 256)},
            ValueError,
            "no mask prompt",
        ),
        (
            {"input_points": torch.rand(2, 1, 1, 2), "attention_similarity": torch.zeros(1)},
            ValueError,
            "unsupported arguments",
        ),
    ],
)
def test_bad_prompts_raise(tiny_model, embeddings, kwargs, error, match):
    if kwargs:  # the first case passes neither images nor embeddings
        kwargs = {"image_embeddings": embeddings, **kwargs}
    with pytest.raises(error, match=match):
        tiny_model(**kwargs)


def test_no_prompt_raises(tiny_model, embeddings):
    with pytest.raises(ValueError, match="At least one prompt"):
        tiny_model(image_embeddings=embeddings)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"pixel_values": torch.rand(1, 3, 512, 512)},
            ValueError,
            r"pixel_values must have shape \(batch_size, 3, 1024, 1024\)",
        ),
        ({"pixel_values": torch.zeros(1, 3, 1024, 1024, dtype=torch.uint8)}, TypeError, "floating-point"),
        ({"pixel_values": torch.rand(3, 1024, 1024)}, ValueError, "pixel_values must have shape"),
        (
            {"image_embeddings": torch.rand(1, 32, 32, 32)},
            ValueError,
            r"image_embeddings must have shape \(batch_size, 32, 64, 64\)",
        ),
        (
            {"pixel_values": torch.rand(1, 3, 1024, 1024), "image_embeddings": torch.rand(1, 32, 64, 64)},
            ValueError,
            "exactly one",
        ),
    ],
)
def test_bad_images_raise(tiny_model, kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny_model(input_points=POINTS[:1], **kwargs)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible by num_attention_heads"):
        EfficientSamVisionConfig(hidden_size=100, num_attention_heads=3)
    with pytest.raises(ValueError, match="widths of the three parts must agree"):
        EfficientSamConfig(vision_config={"output_channels": 128})
    ti, s = EfficientSamConfig.efficientsam_ti(), EfficientSamConfig.efficientsam_s()
    assert (ti.vision_config.hidden_size, ti.vision_config.num_attention_heads) == (192, 3)
    assert (s.vision_config.hidden_size, s.vision_config.num_attention_heads) == (384, 6)
    assert ti.prompt_encoder_config.max_num_points == 6 and ti.mask_decoder_config.num_multimask_outputs == 3


def test_init_weights_are_sane():
    model = EfficientSamModel(tiny_config())
    linear = model.vision_encoder.layers[0].attn.qkv
    assert 0.005 < linear.weight.std().item() < 0.05 and linear.bias.abs().max().item() == 0
    assert model.vision_encoder.layers[0].layer_norm1.weight.eq(1).all()
    assert model.vision_encoder.embeddings.pos_embed.std().item() > 0
