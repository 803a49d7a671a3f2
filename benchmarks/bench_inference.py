"""Image-encoder and single-prompt decoder latency on CPU: EfficientSAM Ti/S with SDPA and with eager attention
(the official code's attention: scores materialised, softmax, matmul) against transformers' SamModel (ViT-B config,
random weights), all measured in this one run, plus the encoder's achieved GFLOP/s next to a plain fp32 matmul's.

    python benchmarks/bench_inference.py [--repeats 5] [--threads 2]

Weights are random (timing does not depend on them). Ratios are what to read; absolute seconds depend on the machine.
"""

from __future__ import annotations

import argparse

import torch
from transformers import SamConfig, SamModel

from efficientsam_hf import EfficientSamConfig, EfficientSamModel
from timing import median_seconds


def encoder_flops(config: EfficientSamConfig) -> float:
    """Multiply-adds x 2 of one 1024x1024 encoder pass (patch embedding, blocks with global attention, neck)."""
    vision = config.vision_config
    tokens, width, out = vision.grid_size**2, vision.hidden_size, vision.output_channels
    patch = tokens * vision.num_channels * vision.patch_size**2 * width
    block = (
        tokens * width * 3 * width
        + 2 * tokens * tokens * width
        + tokens * width * width
        + 2 * tokens * width * vision.mlp_dim
    )
    neck = tokens * width * out + tokens * out * out * 9
    return 2.0 * (patch + vision.num_hidden_layers * block + neck)


def matmul_gflops(repeats: int) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = median_seconds(lambda: torch.mm(a, b), repeats=max(repeats, 5))
    return 2 * 2048**3 / seconds / 1e9


def efficientsam(config: EfficientSamConfig, implementation: str) -> EfficientSamModel:
    torch.manual_seed(0)
    return EfficientSamModel._from_config(config, attn_implementation=implementation).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--decoder-repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pixel_values = torch.randn(1, 3, 1024, 1024)
    point = torch.tensor([[[[500.0, 375.0]]]])
    label = torch.tensor([[[1]]])
    ceiling = matmul_gflops(args.repeats)
    print(f"threads {args.threads}; plain fp32 matmul 2048^3: {ceiling:.1f} GFLOP/s (the practical ceiling)\n")

    def timings(encode, decode) -> tuple[float, float]:
        embeddings = encode(pixel_values)
        encoder = median_seconds(lambda: encode(pixel_values), args.repeats)
        decoder = median_seconds(
            lambda: decode(image_embeddings=embeddings, input_points=point, input_labels=label), args.decoder_repeats
        )
        return encoder, decoder

    rows = {}
    with torch.inference_mode():
        sam = SamModel(SamConfig()).eval()  # SamConfig() is the ViT-B configuration
        rows["SamModel ViT-B"] = (*timings(sam.get_image_embeddings, sam), None)
        for name, config in (("Ti", EfficientSamConfig.efficientsam_ti()), ("S", EfficientSamConfig.efficientsam_s())):
            for implementation in ("eager", "sdpa"):
                model = efficientsam(config, implementation)
                rows[f"EfficientSAM-{name} {implementation}"] = (
                    *timings(model.get_image_embeddings, model),
                    encoder_flops(config),
                )

    print(f"{'model':<26}{'encoder s':>10}{'GFLOP/s':>9}{'% of mm':>8}{'decoder ms':>11}")
    for name, (encoder, decoder, flops) in rows.items():
        gflops = f"{flops / encoder / 1e9:9.1f}{100 * flops / encoder / 1e9 / ceiling:7.0f}%" if flops else " " * 17
        print(f"{name:<26}{encoder:10.3f}{gflops}{decoder * 1e3:11.1f}")

    sam_encoder = rows["SamModel ViT-B"][0]
    print("\nratios (higher is faster)")
    for name in ("Ti", "S"):
        eager, sdpa = rows[f"EfficientSAM-{name} eager"], rows[f"EfficientSAM-{name} sdpa"]
        print(
            f"  {name}: encoder sdpa vs eager {eager[0] / sdpa[0]:.2f}x, vs SamModel ViT-B {sam_encoder / sdpa[0]:.2f}x; "
            f"decoder sdpa vs eager {eager[1] / sdpa[1]:.2f}x, vs SamModel ViT-B {rows['SamModel ViT-B'][1] / sdpa[1]:.2f}x"
        )


if __name__ == "__main__":
    main()
