"""Turn a SAMI checkpoint into an `EfficientSamModel` folder: the pretrained ViT, a fresh neck, prompt encoder and
mask decoder, ready for finetuning (`python -m efficientsam_hf.sami.export CHECKPOINT OUTPUT_DIR`)."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import torch

from ..configuration_efficientsam import EfficientSamConfig
from ..modeling_efficientsam import EfficientSamModel
from .modeling_sami import EfficientSamForSamiPretraining

# The student hyper-parameters that must agree between the SAMI checkpoint and the exported model.
_VIT_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "mlp_ratio",
    "patch_size",
    "pretrain_image_size",
    "qkv_bias",
)


def sami_to_efficientsam(
    sami: EfficientSamForSamiPretraining, config: EfficientSamConfig | None = None, seed: int = 0
) -> EfficientSamModel:
    """An `EfficientSamModel` whose ViT is `sami`'s; everything else (neck, prompt encoder, decoder) freshly
    initialised. `config` defaults to the EfficientSAM defaults around `sami`'s vision config (widths matched)."""
    if not isinstance(sami, EfficientSamForSamiPretraining):
        raise TypeError(f"sami must be an EfficientSamForSamiPretraining, got {type(sami).__name__}.")
    if config is None:
        width = sami.config.vision_config.output_channels  # prompt encoder and decoder must match the neck
        config = EfficientSamConfig(
            vision_config=sami.config.vision_config.to_dict(),
            prompt_encoder_config={"hidden_size": width},
            mask_decoder_config={"hidden_size": width},
        )
    mismatched = {
        key: (getattr(sami.config.vision_config, key), getattr(config.vision_config, key))
        for key in _VIT_KEYS
        if getattr(sami.config.vision_config, key) != getattr(config.vision_config, key)
    }
    if mismatched:
        raise ValueError(
            f"config.vision_config does not describe the SAMI student, (sami, config) differ in {mismatched}."
        )
    torch.manual_seed(seed)
    model = EfficientSamModel(config)
    missing, unexpected = model.vision_encoder.load_state_dict(sami.vision_encoder.state_dict(), strict=False)
    not_neck = [key for key in missing if not key.startswith("neck.")]
    if unexpected or not_neck:
        raise ValueError(
            f"SAMI weights do not fit EfficientSamModel.vision_encoder: missing {not_neck}, unexpected {unexpected}."
        )
    return model.eval()


def export_sami_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: EfficientSamConfig | None = None,
    seed: int = 0,
) -> Path:
    """Load a SAMI checkpoint (a training output or `checkpoint-N` folder) and save the `EfficientSamModel`
    folder atomically (written next to `output_dir`, then renamed)."""
    sami = EfficientSamForSamiPretraining.from_pretrained(str(checkpoint))
    model = sami_to_efficientsam(sami, config, seed=seed)
    output = Path(output_dir)
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    if output.exists():
        shutil.rmtree(output)
    os.replace(tmp, output)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", help="SAMI checkpoint folder (run_sami_pretraining.py output or checkpoint-N)")
    parser.add_argument("output_dir", help="where to write the EfficientSamModel folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh neck / prompt encoder / decoder")
    args = parser.parse_args(argv)
    print(export_sami_checkpoint(args.checkpoint, args.output_dir, seed=args.seed))


if __name__ == "__main__":
    main()
