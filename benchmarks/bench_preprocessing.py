"""How fast is EfficientSamImageProcessor on a 1920x1080 photo, against transformers' SAM image processor?

Peer: `SamImageProcessorPil` (transformers' PIL backend; the default `SamImageProcessor` needs torchvision, which
this project never installs). Both get the same in-memory PIL image (a COCO photo from ../shared resized to
1920x1080; nothing is written to ../shared) and return torch tensors; the two are timed alternately in the same
process and the median of the repeats is reported. Note that the two do different work (EfficientSAM stretches to
1024x1024 with torch; SAM resizes the longest side with PIL and pads), so this answers "what does a user pay per
image", not "which resize kernel is faster".

    python benchmarks/bench_preprocessing.py [--repeats 21] [--threads N] [--image PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from PIL import Image
from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

from efficientsam_hf.image_processing_efficientsam import EfficientSamImageProcessor

COCO_DEV_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco_val2017_dev" / "images"


def load_photo(path: Path | None, size: tuple[int, int] = (1920, 1080)) -> Image.Image:
    if path is None:
        candidates = sorted(COCO_DEV_IMAGES.glob("*.jpg"))
        if not candidates:
            raise SystemExit(f"No photo found in {COCO_DEV_IMAGES}; pass --image PATH.")
        path = candidates[0]
    with Image.open(path) as image:
        return image.convert("RGB").resize(size, Image.BICUBIC)


def time_alternately(functions: dict, repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    for function in functions.values():
        for _ in range(warmup):
            function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--image", type=Path, default=None, help="photo to resize to 1920x1080 (default: COCO dev)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    photo = load_photo(args.image)
    ours = EfficientSamImageProcessor()
    sam = SamImageProcessorPil()
    ours_out = ours(photo, return_tensors="pt")["pixel_values"]
    sam_out = sam(photo, return_tensors="pt")["pixel_values"]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"input: PIL RGB {photo.size[0]}x{photo.size[1]}; torch threads: {torch.get_num_threads()}; "
        f"{os.cpu_count()} CPUs, load average {load}"
    )
    print(f"outputs: EfficientSamImageProcessor {tuple(ours_out.shape)}, SamImageProcessorPil {tuple(sam_out.shape)}")

    times = time_alternately(
        {
            "EfficientSamImageProcessor": lambda: ours(photo, return_tensors="pt"),
            "SamImageProcessorPil": lambda: sam(photo, return_tensors="pt"),
        },
        repeats=args.repeats,
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:28s} median {medians[name] * 1e3:8.2f} ms   (min {min(values) * 1e3:.2f}, n={len(values)})")
    ratio = medians["SamImageProcessorPil"] / medians["EfficientSamImageProcessor"]
    print(f"speed-up (SamImageProcessorPil median / EfficientSamImageProcessor median): {ratio:.2f}x")


if __name__ == "__main__":
    main()
