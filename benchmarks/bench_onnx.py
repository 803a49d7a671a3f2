"""Encoder and prompt-decoder latency on CPU: onnxruntime on the exported graphs against the PyTorch model, in one run.

    python benchmarks/bench_onnx.py [--model PATH] [--threads 2] [--repeats 5] [--queries 8] [--points 2]

The model defaults to the synthetic EfficientSAM-Ti checkpoint in ../shared/reference (random weights: timing does not
depend on them); it is exported (and verified) into a temporary folder unless --onnx-dir names an existing export.
Both runtimes get the same thread count and the same inputs. Ratios are what to read (> 1: onnxruntime is faster);
absolute milliseconds depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from efficientsam_hf.onnx_export import DECODER_FILE, ENCODER_FILE, export_onnx, load_model, require_onnx
from timing import median_seconds

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "efficient_sam_vitt_synthetic_fp16.pt"


def session(path: Path, threads: int):
    _, onnxruntime = require_onnx()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure(model, onnx_dir: Path, args) -> list[tuple[str, float, float]]:
    """[(part, PyTorch seconds, onnxruntime seconds)], same inputs for both."""
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(args.batch, 3, 1024, 1024, generator=generator)
    with torch.no_grad():
        embeddings = model.get_image_embeddings(pixel_values)
    points = torch.rand(args.batch, args.queries, args.points, 2, generator=generator) * 1024
    labels = torch.ones(args.batch, args.queries, args.points, dtype=torch.long)
    encoder, decoder = session(onnx_dir / ENCODER_FILE, args.threads), session(onnx_dir / DECODER_FILE, args.threads)
    decoder_feed = {
        "image_embeddings": embeddings.numpy(),
        "input_points": points.numpy(),
        "input_labels": labels.numpy(),
    }

    def torch_decoder():
        with torch.no_grad():
            return model(image_embeddings=embeddings, input_points=points, input_labels=labels)

    cases = [
        (
            "encoder",
            lambda: model.get_image_embeddings(pixel_values),
            lambda: encoder.run(None, {"pixel_values": pixel_values.numpy()}),
        ),
        (f"decoder ({args.queries}x{args.points} pts)", torch_decoder, lambda: decoder.run(None, decoder_feed)),
    ]
    # Same numbers out of both, so the timings compare like with like.
    iou_torch, iou_onnx = torch_decoder().iou_scores.numpy(), decoder.run(None, decoder_feed)[0]
    print(f"decoder iou max abs difference: {np.abs(iou_torch - iou_onnx).max():.2g}")
    rows = []
    for name, torch_fn, onnx_fn in tqdm(cases, desc="timing", unit="part"):
        rows.append(
            (
                name,
                median_seconds(torch_fn, args.repeats, args.warmup),
                median_seconds(onnx_fn, args.repeats, args.warmup),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=str(DEFAULT_MODEL), help="folder, Hub id or official .pt (default: synthetic Ti)"
    )
    parser.add_argument("--onnx-dir", default=None, help="an existing export of --model (default: export now)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--points", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    with tempfile.TemporaryDirectory() as scratch:
        onnx_dir = Path(args.onnx_dir) if args.onnx_dir else Path(scratch)
        if not args.onnx_dir:
            result = export_onnx(model, onnx_dir)
            print(f"exported and verified: max abs error {result.worst_error:.2g}")
        rows = measure(model, onnx_dir, args)
    print(f"\nCPU, {args.threads} threads, batch {args.batch}, median of {args.repeats} ({args.model})")
    print(f"{'part':<24} {'pytorch ms':>11} {'onnxruntime ms':>15} {'pytorch/ort':>12}")
    for name, torch_s, onnx_s in rows:
        print(f"{name:<24} {torch_s * 1e3:>11.1f} {onnx_s * 1e3:>15.1f} {torch_s / onnx_s:>12.2f}")


if __name__ == "__main__":
    main()
