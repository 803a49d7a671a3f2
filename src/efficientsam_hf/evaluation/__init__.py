"""Zero-shot evaluation on COCO-format data: GT-box and click prompts (mIoU), detector boxes (COCO AP).

Model-agnostic: anything with SAM's model/processor interface is wrapped in a `PromptableSegmenter`.
`training/run_zero_shot_eval.py` is the command-line entry point.
"""

from .clicks import FIRST_CLICK_STRATEGIES, click_rng, first_click, next_click, region_center
from .coco import (
    annotation_mask,
    coco_from_dict,
    encode_mask,
    gt_boxes_as_detections,
    load_coco,
    load_detections,
    load_image,
    validate_detections,
    validate_instances,
)
from .metrics import area_bucket, mask_iou, segm_ap, summarize_ious
from .report import build_report, describe_model, markdown_tables, write_report
from .runner import evaluate, evaluate_image
from .segmenter import PromptableSegmenter
from .settings import ZeroShotEvalSettings

__all__ = [
    "FIRST_CLICK_STRATEGIES",
    "PromptableSegmenter",
    "ZeroShotEvalSettings",
    "annotation_mask",
    "area_bucket",
    "build_report",
    "click_rng",
    "coco_from_dict",
    "describe_model",
    "encode_mask",
    "evaluate",
    "evaluate_image",
    "first_click",
    "gt_boxes_as_detections",
    "load_coco",
    "load_detections",
    "load_image",
    "markdown_tables",
    "mask_iou",
    "next_click",
    "region_center",
    "segm_ap",
    "summarize_ious",
    "validate_detections",
    "validate_instances",
    "write_report",
]
