"""SAMI model: masking, the cross-attention decoder's merge, weight transfer, teacher targets, losses."""

from __future__ import annotations

import pytest
import torch
from transformers import SamVisionConfig, SamVisionModel, ViTConfig, ViTModel

from efficientsam_hf import EfficientSamVisionConfig, EfficientSamVisionModel
from efficientsam_hf.sami import (
    EfficientSamForSamiPretraining,
    EfficientSamSamiConfig,
    SamiTeacher,
    random_masking,
    resample_to_grid,
)

TINY_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, output_channels=32)


def tiny_sami_config(**overrides) -> EfficientSamSamiConfig:
    kwargs = dict(
        vision_config=TINY_VISION,
        decoder_hidden_size=32,
        decoder_num_hidden_layers=2,
        decoder_num_attention_heads=2,
        teacher_hidden_size=16,
    )
    kwargs.update(overrides)
    return EfficientSamSamiConfig(**kwargs)


def tiny_sam_teacher() -> SamiTeacher:
    torch.manual_seed(0)
    config = SamVisionConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=128, output_channels=16,
        window_size=4, global_attn_indexes=[1], mlp_dim=64, num_pos_feats=16, initializer_range=0.02,
    )  # fmt: skip
    return SamiTeacher(SamVisionModel(config))


@pytest.fixture(scope="module")
def sami_model() -> EfficientSamForSamiPretraining:
    torch.manual_seed(0)
    return EfficientSamForSamiPretraining(tiny_sami_config())


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.9, 0.0])
def test_random_masking_hides_exactly_the_requested_fraction(ratio):
    config = tiny_sami_config(mask_ratio=ratio)
    tokens = torch.randn(3, config.grid_size**2, 8)
    visible, mask, ids_shuffle, ids_restore = random_masking(tokens, config.num_masked_tokens)
    num_tokens = config.grid_size**2
    assert config.num_masked_tokens == round(num_tokens * ratio)
    assert mask.sum(1).tolist() == [config.num_masked_tokens] * 3
    assert visible.shape == (3, num_tokens - config.num_masked_tokens, 8)
    # the visible tokens are exactly the unmasked ones, and ids_restore undoes the shuffle
    for b in range(3):
        kept = tokens[b][mask[b] == 0]
        assert torch.equal(torch.sort(kept, dim=0).values, torch.sort(visible[b], dim=0).values)
    shuffled = torch.gather(tokens, 1, ids_shuffle.unsqueeze(-1).expand(-1, -1, 8))
    assert torch.equal(torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, 8)), tokens)


def test_forward_masks_three_quarters_of_the_224_grid_and_returns_a_loss(sami_model):
    teacher_maps = torch.randn(2, 16, 8, 8)
    out = sami_model(pixel_values=torch.randn(2, 3, 224, 224), teacher_features=teacher_maps)
    assert out.logits.shape == (2, 196, 16)
    assert out.mask.sum(1).tolist() == [147.0, 147.0]
    assert out.last_hidden_state.shape == (2, 49, 32)
    assert out.loss.ndim == 0 and out.loss > 0
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits, out.teacher_features))


def test_noise_decides_the_mask_and_the_visible_tokens_decide_the_output(sami_model):
    pixel_values = torch.randn(1, 3, 224, 224)
    noise = torch.rand(1, 196)
    first = sami_model(pixel_values=pixel_values, noise=noise)
    second = sami_model(pixel_values=pixel_values, noise=noise)
    assert torch.equal(first.logits, second.logits) and first.loss is None
    # changing only masked pixels' patches must not change the encoder output
    masked_patch = int(torch.nonzero(first.mask[0])[0])
    row, col = divmod(masked_patch, 14)
    edited = pixel_values.clone()
    edited[..., row * 16 : row * 16 + 16, col * 16 : col * 16 + 16] += 5.0
    torch.testing.assert_close(sami_model(pixel_values=edited, noise=noise).last_hidden_state, first.last_hidden_state)


def test_student_weights_are_efficientsam_vision_weights_one_to_one(sami_model):
    vision = EfficientSamVisionModel(EfficientSamVisionConfig(**TINY_VISION))
    missing, unexpected = vision.vision_encoder.load_state_dict(sami_model.vision_encoder.state_dict(), strict=False)
    assert unexpected == [] and missing and all(key.startswith("neck.") for key in missing)
    assert all(key.startswith(("vision_encoder.", "decoder.")) for key in sami_model.state_dict())
    pixel_values = torch.randn(1, 3, 224, 224)
    tokens, _ = vision.vision_encoder.embeddings(pixel_values)
    noise = torch.linspace(0, 1, 196).unsqueeze(0)  # largest noise masked: the first 49 tokens stay visible
    for layer in vision.vision_encoder.layers:
        tokens, _ = layer(tokens[:, :49] if tokens.shape[1] == 196 else tokens)
    out = sami_model(pixel_values=pixel_values, noise=noise)
    torch.testing.assert_close(out.last_hidden_state, tokens)


def test_teacher_is_used_but_never_saved(sami_model, tmp_path):
    model = EfficientSamForSamiPretraining(tiny_sami_config())
    model.set_teacher(tiny_sam_teacher())
    out = model(pixel_values=torch.randn(2, 3, 224, 224))
    assert out.teacher_features.shape == (2, 196, 16) and out.loss is not None
    out.loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    model.train()
    assert not model.teacher.training
    assert not any("teacher" in key for key in model.state_dict())
    with pytest.raises(ValueError, match="teacher_hidden_size"):
        EfficientSamForSamiPretraining(tiny_sami_config(teacher_hidden_size=8)).set_teacher(tiny_sam_teacher())


def test_teacher_from_a_sam_folder_and_a_token_output_model(tmp_path):
    teacher = tiny_sam_teacher()
    teacher.model.save_pretrained(tmp_path / "sam")
    loaded = SamiTeacher.from_pretrained(str(tmp_path / "sam"))
    assert type(loaded.model) is SamVisionModel and loaded.hidden_size == 16 and loaded.image_size == 128
    pixel_values = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(loaded(pixel_values), teacher(pixel_values))
    vit = ViTModel(
        ViTConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=64,
            patch_size=16,
        )
    )
    vit_teacher = SamiTeacher(vit)  # (B, 1 + 16, C) tokens: the CLS token is dropped
    assert vit_teacher(pixel_values).shape == (1, 16, 4, 4)


def test_precomputed_whole_image_equals_online_teacher_when_the_crop_is_the_image(sami_model):
    teacher = tiny_sam_teacher()
    pixel_values = torch.randn(2, 3, 224, 224)
    online = EfficientSamForSamiPretraining(tiny_sami_config())
    online.set_teacher(teacher)
    noise = torch.rand(2, 196)
    from_teacher = online(pixel_values=pixel_values, noise=noise)
    cached = online(
        pixel_values=pixel_values,
        noise=noise,
        teacher_features=teacher(pixel_values),
        crop_boxes=torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2),
    )
    torch.testing.assert_close(cached.loss, from_teacher.loss)


def test_resample_to_grid_is_an_area_average_that_follows_crops_and_flips():
    features = torch.randn(2, 4, 28, 28)
    full = resample_to_grid(features, (14, 14))
    expected = torch.nn.functional.avg_pool2d(features, 2).flatten(2).transpose(1, 2)
    torch.testing.assert_close(full, expected)
    # the right half of the map, flipped
    half = resample_to_grid(features, (14, 7), torch.tensor([[0.5, 0.0, 1.0, 1.0]] * 2), torch.tensor([True, False]))
    pooled = torch.nn.functional.avg_pool2d(features[..., 14:], 2)
    torch.testing.assert_close(half[0], pooled[0].flip(-1).flatten(1).T)
    torch.testing.assert_close(half[1], pooled[1].flatten(1).T)


@pytest.mark.parametrize("loss_type", ["mse", "cosine"])
def test_loss_types(loss_type):
    model = EfficientSamForSamiPretraining(tiny_sami_config(loss_type=loss_type))
    out = model(pixel_values=torch.randn(1, 3, 224, 224), teacher_features=torch.randn(1, 16, 14, 14))
    if loss_type == "cosine":
        cosine = torch.nn.functional.cosine_similarity(out.logits, out.teacher_features, dim=-1)
        torch.testing.assert_close(out.loss, (1 - cosine).mean())
    assert 0 < out.loss < 4


def test_bad_inputs_raise_naming_the_argument(sami_model):
    with pytest.raises(ValueError, match="mask_ratio"):
        tiny_sami_config(mask_ratio=1.0)
    with pytest.raises(ValueError, match="loss_type"):
        tiny_sami_config(loss_type="l1")
    with pytest.raises(ValueError, match="pixel_values"):
        sami_model(pixel_values=torch.randn(1, 3, 1024, 1024))
    with pytest.raises(ValueError, match="noise"):
        sami_model(pixel_values=torch.randn(1, 3, 224, 224), noise=torch.rand(1, 10))
    with pytest.raises(ValueError, match="teacher_features"):
        sami_model(pixel_values=torch.randn(2, 3, 224, 224), teacher_features=torch.randn(1, 16, 8, 8))
    with pytest.raises(TypeError, match="teacher"):
        sami_model.set_teacher(torch.nn.Linear(2, 2))


def test_save_and_reload_give_the_same_predictions(sami_model, tmp_path):
    sami_model.save_pretrained(tmp_path / "sami")
    reloaded = EfficientSamForSamiPretraining.from_pretrained(tmp_path / "sami")
    pixel_values, noise = torch.randn(1, 3, 224, 224), torch.rand(1, 196)
    torch.testing.assert_close(
        reloaded(pixel_values=pixel_values, noise=noise).logits,
        sami_model(pixel_values=pixel_values, noise=noise).logits,
    )
