"""Convert an official EfficientSAM checkpoint into a safetensors `save_pretrained` folder, verified by reload.

Accepts `efficient_sam_vitt.pt` and `efficient_sam_vits.pt.zip` as released (github.com/yformer/EfficientSAM,
`weights/`). The size is inferred from the tensors. Checkpoints are read with `torch.load(weights_only=True)`;
nothing else is ever unpickled. Every official key is mapped by an explicit rule; a missing, unexpected or
misshapen key stops the conversion with a list of them.

    efficientsam-hf convert --checkpoint efficient_sam_vitt.pt --output efficientsam-ti
    python -m efficientsam_hf.convert --checkpoint efficient_sam_vits.pt.zip --output efficientsam-s
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from .configuration_efficientsam import EfficientSamConfig
from .modeling_efficientsam import EfficientSamModel

# (official regex, our template). Applied in order; the first match wins.
KEY_RULES: list[tuple[str, str]] = [
    (r"^image_encoder\.pos_embed$", "vision_encoder.embeddings.pos_embed"),
    (r"^image_encoder\.patch_embed\.proj\.(weight|bias)$", r"vision_encoder.embeddings.patch_embed.projection.\1"),
    (r"^image_encoder\.blocks\.(\d+)\.norm([12])\.(weight|bias)$", r"vision_encoder.layers.\1.layer_norm\2.\3"),
    (r"^image_encoder\.blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)$", r"vision_encoder.layers.\1.attn.\2.\3"),
    (r"^image_encoder\.blocks\.(\d+)\.mlp\.fc([12])\.(weight|bias)$", r"vision_encoder.layers.\1.mlp.lin\2.\3"),
    (r"^image_encoder\.neck\.0\.weight$", "vision_encoder.neck.conv1.weight"),
    (r"^image_encoder\.neck\.1\.(weight|bias)$", r"vision_encoder.neck.layer_norm1.\1"),
    (r"^image_encoder\.neck\.2\.weight$", "vision_encoder.neck.conv2.weight"),
    (r"^image_encoder\.neck\.3\.(weight|bias)$", r"vision_encoder.neck.layer_norm2.\1"),
    (
        r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
        "prompt_encoder.shared_embedding.positional_embedding",
    ),
    (r"^prompt_encoder\.invalid_points\.weight$", "prompt_encoder.padding_point_embed.weight"),
    (r"^prompt_encoder\.point_embeddings\.weight$", "prompt_encoder.positive_point_embed.weight"),
    (r"^prompt_encoder\.bbox_top_left_embeddings\.weight$", "prompt_encoder.box_top_left_embed.weight"),
    (r"^prompt_encoder\.bbox_bottom_right_embeddings\.weight$", "prompt_encoder.box_bottom_right_embed.weight"),
    (
        r"^mask_decoder\.transformer\.layers\.(\d+)\.(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)"
        r"\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)$",
        r"mask_decoder.transformer.layers.\1.\2.\3.\4",
    ),
    (
        r"^mask_decoder\.transformer\.layers\.(\d+)\.norm([1-4])\.(weight|bias)$",
        r"mask_decoder.transformer.layers.\1.layer_norm\2.\3",
    ),
    (
        r"^mask_decoder\.transformer\.layers\.(\d+)\.mlp\.layers\.0\.0\.(weight|bias)$",
        r"mask_decoder.transformer.layers.\1.mlp.lin1.\2",
    ),
    (
        r"^mask_decoder\.transformer\.layers\.(\d+)\.mlp\.fc\.(weight|bias)$",
        r"mask_decoder.transformer.layers.\1.mlp.lin2.\2",
    ),
    (
        r"^mask_decoder\.transformer\.final_attn_token_to_image\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)$",
        r"mask_decoder.transformer.final_attn_token_to_image.\1.\2",
    ),
    (
        r"^mask_decoder\.transformer\.norm_final_attn\.(weight|bias)$",
        r"mask_decoder.transformer.layer_norm_final_attn.\1",
    ),
    (r"^mask_decoder\.(iou_token|mask_tokens)\.weight$", r"mask_decoder.\1.weight"),
    (r"^mask_decoder\.final_output_upscaling_layers\.(\d+)\.0\.(weight|bias)$", r"mask_decoder.upscale_convs.\1.\2"),
    (r"^mask_decoder\.final_output_upscaling_layers\.(\d+)\.1\.(weight|bias)$", r"mask_decoder.upscale_norms.\1.\2"),
    (
        r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.0\.0\.(weight|bias)$",
        r"mask_decoder.\1.proj_in.\2",
    ),
    (
        r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.(\d+)\.0\.(weight|bias)$",
        lambda m: f"mask_decoder.{m.group(1)}.layers.{int(m.group(2)) - 1}.{m.group(3)}",
    ),
    (
        r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.fc\.(weight|bias)$",
        r"mask_decoder.\1.proj_out.\2",
    ),
]


# The reloaded folder computes the same function; allow only float32 rounding noise.
RELOAD_TOLERANCE = 1e-5


class ConversionError(ValueError):
    """The checkpoint does not match the EfficientSAM architecture; the message lists every offending key."""


def rename_key(key: str) -> str | None:
    """Our name for an official state_dict key, or None when no rule knows it."""
    for pattern, template in KEY_RULES:
        match = re.match(pattern, key)
        if match:
            return template(match) if callable(template) else match.expand(template)
    return None


def read_official_state_dict(checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the official checkpoint (`.pt`, or the `.pt.zip` that wraps one) as float32 tensors, safely."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with tempfile.TemporaryDirectory() as tmp:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                is_torch_archive = any(name.endswith("data.pkl") for name in names)
                if not is_torch_archive:
                    members = [name for name in names if name.endswith(".pt") and not name.startswith("__MACOSX")]
                    if len(members) != 1:
                        raise ConversionError(
                            f"{path} is a zip without exactly one .pt file inside (found {members})."
                        )
                    path = Path(archive.extract(members[0], tmp))
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle errors come in many types; report them uniformly
            raise ConversionError(f"{checkpoint} is not a readable weights-only torch checkpoint: {error}") from error
    state_dict = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ConversionError(f"{checkpoint} does not hold a state_dict (expected {{'model': state_dict}}).")
    # Official files are fp32 (the synthetic reference ones fp16); the model computes in fp32.
    return {key: value.to(torch.float32) for key, value in state_dict.items()}


def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> EfficientSamConfig:
    """Infer the size from the tensors: width from the patch embedding, depth from the block indices, and the head
    count from the 64-wide heads both released sizes use (Ti 192/3, S 384/6)."""
    if "image_encoder.patch_embed.proj.weight" not in state_dict:
        raise ConversionError("image_encoder.patch_embed.proj.weight is missing: not an EfficientSAM checkpoint.")
    width, channels, patch, _ = state_dict["image_encoder.patch_embed.proj.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k)))
    pos_tokens = state_dict["image_encoder.pos_embed"].shape[1] - 1
    pretrain_grid = int(round(pos_tokens**0.5))
    if width % 64:
        raise ConversionError(
            f"cannot infer the number of heads for an encoder of width {width} (not a multiple of 64)."
        )
    return EfficientSamConfig(
        vision_config={
            "hidden_size": width,
            "num_attention_heads": width // 64,
            "num_hidden_layers": depth,
            "patch_size": patch,
            "num_channels": channels,
            "pretrain_image_size": pretrain_grid * patch,
            "mlp_ratio": state_dict["image_encoder.blocks.0.mlp.fc1.weight"].shape[0] / width,
        }
    )


def convert_state_dict(state_dict: dict[str, torch.Tensor], model: EfficientSamModel) -> dict[str, torch.Tensor]:
    """Rename every key and check it against `model`; raise ConversionError listing every problem."""
    expected = model.state_dict()
    converted, unknown, misshapen = {}, [], []
    for key, value in state_dict.items():
        new_key = rename_key(key)
        if new_key is None or new_key not in expected:
            unknown.append(key)
            continue
        if tuple(expected[new_key].shape) != tuple(value.shape):
            misshapen.append(f"{key}: {tuple(value.shape)} (expected {tuple(expected[new_key].shape)})")
            continue
        converted[new_key] = value
    missing = sorted(set(expected) - set(converted) - {_ours_of(k) for k in misshapen})
    problems = []
    if unknown:
        problems.append("unexpected keys: " + ", ".join(sorted(unknown)))
    if misshapen:
        problems.append("misshapen keys: " + ", ".join(misshapen))
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if problems:
        raise ConversionError("checkpoint does not match EfficientSAM:\n  " + "\n  ".join(problems))
    return converted


def _ours_of(misshapen_entry: str) -> str:
    return rename_key(misshapen_entry.split(":")[0]) or ""


def load_official_checkpoint(checkpoint: str | os.PathLike) -> EfficientSamModel:
    """Official checkpoint -> `EfficientSamModel` (fp32, eval mode), every key accounted for."""
    state_dict = read_official_state_dict(checkpoint)
    model = EfficientSamModel(config_from_state_dict(state_dict))
    model.load_state_dict(convert_state_dict(state_dict, model), strict=True)
    return model.eval()


def _probe_outputs(model: EfficientSamModel) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed input through the whole model, to compare a reloaded folder with the in-memory conversion."""
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(1, 3, 1024, 1024, generator=generator)
    points = torch.tensor([[[[300.0, 400.0], [700.0, 500.0]]]])
    labels = torch.tensor([[[1, 0]]])
    with torch.no_grad():
        output = model(pixel_values=pixel_values, input_points=points, input_labels=labels)
    return output.iou_scores, output.pred_masks


def save_converted(model: EfficientSamModel, output_dir: str | os.PathLike) -> Path:
    """`save_pretrained` of model, image processor and processor into `output_dir`, written atomically (into a
    temporary sibling folder that is renamed into place), then reloaded and checked against `model`."""
    from .image_processing_efficientsam import EfficientSamImageProcessor
    from .processing_efficientsam import EfficientSamProcessor

    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        EfficientSamProcessor(image_processor=EfficientSamImageProcessor()).save_pretrained(staging)
        reloaded = EfficientSamModel.from_pretrained(staging).eval()
        expected, got = _probe_outputs(model), _probe_outputs(reloaded)
        error = max((a - b).abs().max().item() for a, b in zip(expected, got))
        if error > RELOAD_TOLERANCE:
            raise ConversionError(f"the reloaded folder differs from the converted model (max abs error {error:.3g}).")
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    push_to_hub: str | None = None,
    model_card: str | os.PathLike | None = None,
) -> Path:
    """Full conversion: read, map, save, verify by reload; optionally upload the folder to the Hub."""
    model = load_official_checkpoint(checkpoint)
    folder = save_converted(model, output_dir)
    if model_card is not None:
        shutil.copyfile(model_card, folder / "README.md")
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(push_to_hub, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=push_to_hub, repo_type="model")
    return folder


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--checkpoint", required=True, help="official efficient_sam_vitt.pt or efficient_sam_vits.pt.zip"
    )
    parser.add_argument("--output", required=True, help="folder to write (replaced atomically if it exists)")
    parser.add_argument(
        "--push-to-hub", metavar="REPO_ID", default=None, help="also upload the folder to this Hub repo"
    )
    parser.add_argument("--model-card", default=None, help="Markdown card to write as README.md (and upload)")
    return parser


def run(args: argparse.Namespace) -> int:
    folder = convert_checkpoint(args.checkpoint, args.output, push_to_hub=args.push_to_hub, model_card=args.model_card)
    config = EfficientSamConfig.from_pretrained(folder)
    print(
        f"converted {args.checkpoint} -> {folder} (encoder width {config.vision_config.hidden_size}, "
        f"{config.vision_config.num_attention_heads} heads); reload verified"
        + (f"; pushed to {args.push_to_hub}" if args.push_to_hub else "")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(
        argparse.ArgumentParser(prog="python -m efficientsam_hf.convert", description=__doc__.splitlines()[0])
    )
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ConversionError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
