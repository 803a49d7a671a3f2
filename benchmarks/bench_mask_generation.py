"""Segment everything on a real photo: our pipeline vs our exhaustive path vs transformers' SamModel pipeline.

    python benchmarks/bench_mask_generation.py [--points-per-side 32] [--image PATH]

Peers, all with the same point grid, each run in its own process so that peak RSS is its own:
- `efficientsam` : `pipeline("mask-generation")` with EfficientSAM-Ti (ours: IoU filter before upsampling, chunked);
- `exhaustive`   : transformers' stock `MaskGenerationPipeline` around the same model and image processor (decode
                   every point, upsample every mask, then filter) -- the reference our fast path must equal;
- `sam-vit-b`    : transformers' `SamModel` (ViT-B config, random weights) in the stock pipeline with
                   `SamImageProcessorPil`; its NMS needs torchvision, which has no CPU build here, so only that call
                   is swapped for our pure-torch NMS.
Each runs with the pipeline defaults (pred_iou_thresh 0.88, stability 0.95) and with every threshold at 0 (worst
case: every mask survives). EfficientSAM uses the synthetic Ti checkpoint from ../shared/reference converted on the fly
(the real weights are not available here): timings are representative, the masks are not meaningful.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "coco_val2017_dev" / "images" / "000000000139.jpg"
SYNTHETIC_TI = REPO.parent / "shared" / "reference" / "efficient_sam_vitt_synthetic_fp16.pt"
SETTINGS = {"defaults": {}, "thresholds-0": {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}}


def build(peer: str):
    import torch
    from transformers import SamConfig, SamImageProcessorPil, SamModel
    from transformers.pipelines import MaskGenerationPipeline

    import efficientsam_hf  # noqa: F401  (registers the pipeline)
    from efficientsam_hf import EfficientSamImageProcessor
    from efficientsam_hf.convert import load_official_checkpoint
    from efficientsam_hf.image_processing_efficientsam import _post_process_for_mask_generation
    from efficientsam_hf.mask_generation import EfficientSamMaskGenerationPipeline

    if peer == "sam-vit-b":

        class SamImageProcessorPureTorchNms(SamImageProcessorPil):
            def post_process_for_mask_generation(self, all_masks, all_scores, all_boxes, crops_nms_thresh):
                return _post_process_for_mask_generation(all_masks, all_scores, all_boxes, crops_nms_thresh)

        torch.manual_seed(0)
        return MaskGenerationPipeline(
            model=SamModel(SamConfig()).eval(), image_processor=SamImageProcessorPureTorchNms()
        )
    model = load_official_checkpoint(SYNTHETIC_TI)
    cls = EfficientSamMaskGenerationPipeline if peer == "efficientsam" else MaskGenerationPipeline
    return cls(model=model, image_processor=EfficientSamImageProcessor())


def run_one(
    peer: str, setting: str, image_path: str, points_per_side: int, points_per_batch: int, resize: int
) -> dict:
    from PIL import Image

    generator = build(peer)
    image = Image.open(image_path).convert("RGB")
    if resize:
        image = image.resize((resize, resize))
    start = time.perf_counter()
    result = generator(image, points_per_crop=points_per_side, points_per_batch=points_per_batch, **SETTINGS[setting])
    seconds = time.perf_counter() - start
    masks = sorted(hashlib.sha1(m.numpy().tobytes()).hexdigest() for m in result["masks"])
    return {
        "seconds": seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "num_masks": len(masks),
        "masks_hash": hashlib.sha1("".join(masks).encode()).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--resize", type=int, default=0, help="stretch the photo to RESIZE x RESIZE first (0: as is)")
    parser.add_argument("--peers", default="efficientsam,exhaustive,sam-vit-b")
    parser.add_argument("--settings", default="defaults,thresholds-0")
    parser.add_argument("--one", nargs=2, metavar=("PEER", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, args.image, args.points_per_side, args.points_per_batch, args.resize)))
        return

    size = f"stretched to {args.resize}x{args.resize}" if args.resize else "as is"
    print(
        f"image {args.image} ({size}); {args.points_per_side}x{args.points_per_side} grid; "
        f"points_per_batch {args.points_per_batch}; EfficientSAM-Ti synthetic weights"
    )
    results = {}
    for setting in args.settings.split(","):
        for peer in args.peers.split(","):
            command = [sys.executable, __file__, "--one", peer, setting, "--image", args.image]
            command += [
                "--points-per-side",
                str(args.points_per_side),
                "--points-per-batch",
                str(args.points_per_batch),
            ]
            command += ["--resize", str(args.resize)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[peer, setting] = json.loads(output.strip().splitlines()[-1])
            row = results[peer, setting]
            print(
                f"  {setting:<13}{peer:<13}{row['seconds']:9.1f} s  peak RSS {row['peak_rss_gb']:5.2f} GB  "
                f"{row['num_masks']:5d} masks",
                flush=True,
            )
    print("\nratios (time of the peer / time of ours; higher is faster)")
    for setting in args.settings.split(","):
        ours = results.get(("efficientsam", setting))
        if not ours:
            continue
        for peer in ("exhaustive", "sam-vit-b"):
            if (peer, setting) in results:
                print(f"  {setting:<13}vs {peer:<11}{results[peer, setting]['seconds'] / ours['seconds']:6.2f}x")
        if ("exhaustive", setting) in results:
            same = results["exhaustive", setting]["masks_hash"] == ours["masks_hash"]
            print(f"  {setting:<13}same masks as the exhaustive path: {same}")


if __name__ == "__main__":
    main()
