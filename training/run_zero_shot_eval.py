#!/usr/bin/env python
"""Zero-shot evaluation of SAM-interface models on COCO-format data (GT boxes, clicks, detector boxes).

Any folder that `AutoModel` / `AutoProcessor` load to a model + processor with SAM's interface works: an
EfficientSAM folder (this package registers it with the Auto classes) or a transformers `SamModel` folder. Several
`--model_name_or_path` values are evaluated one after the other by the same code, into one results table.

    python training/run_zero_shot_eval.py \
        --model_name_or_path path/to/efficientsam-ti path/to/sam-vit-base \
        --annotation_file ../shared/data/coco_val2017_dev/instances.json \
        --image_dir ../shared/data/coco_val2017_dev/images \
        --gt_boxes_as_detections --output_dir eval_out

Outputs `results.json` (every number, settings, models) and `results.md` in `output_dir`; per-image predictions
are cached in `output_dir/<model>/cache`, so rerunning the same command after an interruption resumes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoModel, AutoProcessor, HfArgumentParser

import efficientsam_hf  # noqa: F401  (registers EfficientSAM with the Auto classes)
from efficientsam_hf.evaluation import (
    PromptableSegmenter,
    ZeroShotEvalSettings,
    build_report,
    describe_model,
    evaluate,
    gt_boxes_as_detections,
    load_coco,
    load_detections,
    markdown_tables,
    write_report,
)

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: list[str] = field(
        metadata={"help": "One or more model folders (or Hub ids) with a SAM-interface model and processor."}
    )
    device: str = field(default="cpu", metadata={"help": "Device to run the models on."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow code shipped in the model folder."})


@dataclass
class DataArguments:
    annotation_file: str = field(metadata={"help": "COCO instances JSON (images, annotations, categories)."})
    image_dir: str = field(metadata={"help": "Folder holding the images named by `file_name`."})
    detections_file: str | None = field(
        default=None, metadata={"help": "COCO results JSON of detections (image_id, category_id, bbox, score)."}
    )
    gt_boxes_as_detections: bool = field(
        default=False,
        metadata={"help": "Use ground-truth boxes (score 1) as detections: the box-to-mask AP upper bound."},
    )
    image_ids: list[int] | None = field(default=None, metadata={"help": "Evaluate only these image ids."})
    max_images: int | None = field(default=None, metadata={"help": "Evaluate only the first N images (by id)."})


@dataclass
class RunArguments:
    output_dir: str = field(metadata={"help": "Where results.json, results.md and the per-image caches go."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute every image instead of resuming."})
    num_threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads for CPU runs."})
    disable_tqdm: bool = field(default=False, metadata={"help": "Hide the progress bar."})


def _slug(name: str) -> str:
    """A folder name per model that stays unique for different paths with the same last component."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.rstrip("/")).name) or "model"
    return f"{base}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _detections(data_args: DataArguments, coco):
    if data_args.detections_file and data_args.gt_boxes_as_detections:
        raise ValueError("Give detections_file or gt_boxes_as_detections, not both.")
    if data_args.detections_file:
        return load_detections(data_args.detections_file, coco), {
            "detections": data_args.detections_file,
            "detections_sha256": _file_digest(data_args.detections_file),
        }
    if data_args.gt_boxes_as_detections:
        return gt_boxes_as_detections(coco), {"detections": "ground-truth boxes (score 1.0)"}
    return None, {}


def main(args: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ModelArguments, DataArguments, ZeroShotEvalSettings, RunArguments))
    if args is None and len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, settings, run_args = parser.parse_json_file(json_file=sys.argv[1])
    else:
        model_args, data_args, settings, run_args = parser.parse_args_into_dataclasses(args=args)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    if run_args.num_threads:
        torch.set_num_threads(run_args.num_threads)
    if data_args.max_images is not None and data_args.max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {data_args.max_images}.")

    coco = load_coco(data_args.annotation_file)
    detections, detections_info = _detections(data_args, coco)
    image_ids = sorted(data_args.image_ids or coco.getImgIds())[: data_args.max_images]
    data = {
        "annotation_file": data_args.annotation_file,
        "annotation_sha256": _file_digest(data_args.annotation_file),
        "image_dir": data_args.image_dir,
        "image_ids": image_ids,
        **detections_info,
    }

    output_dir = Path(run_args.output_dir)
    model_results = []
    for name in model_args.model_name_or_path:
        logger.info("Evaluating %s", name)
        model = AutoModel.from_pretrained(name, trust_remote_code=model_args.trust_remote_code)
        model = model.to(model_args.device).eval()
        processor = AutoProcessor.from_pretrained(name, trust_remote_code=model_args.trust_remote_code)
        segmenter = PromptableSegmenter(model, processor, settings.multimask_output, settings.prompt_batch_size)
        model_info = describe_model(model, name)
        summary = evaluate(
            segmenter,
            coco,
            data_args.image_dir,
            settings,
            cache_dir=output_dir / _slug(name) / "cache",
            detections=detections,
            image_ids=image_ids,
            fingerprint={
                "model": model_info,
                "data": {k: v for k, v in data.items() if k.startswith(("annotation_sha", "detections"))},
            },
            overwrite_cache=run_args.overwrite_cache,
            progress=not run_args.disable_tqdm,
            description=Path(name.rstrip("/")).name,
        )
        model_results.append(
            {
                "model": model_info,
                "processor": type(processor).__name__,
                "mask_selection": segmenter.mask_selection,
                "summary": summary,
            }
        )

    report = build_report(model_results, settings, data, extra={"arguments": {**asdict(run_args)}})
    json_path, md_path = write_report(report, output_dir)
    print(markdown_tables(report))
    logger.info("Wrote %s and %s", json_path, md_path)
    return report


if __name__ == "__main__":
    main()
