"""Results as one JSON (every number, the settings, the models) and a Markdown table for notes and model cards."""

from __future__ import annotations

import datetime
import os
from dataclasses import asdict
from pathlib import Path

import torch

from .cache import write_json_atomic, write_text_atomic
from .metrics import AP_NAMES, AREA_BUCKETS
from .settings import ZeroShotEvalSettings

UNITS = {
    "miou": "percent (0-100), mean over objects of the mask IoU",
    "AP": "COCOeval fractions (0-1), iouType='segm'; -1 where COCOeval has no ground truth in that range",
    "area_buckets": "COCO, by annotation area: small < 32^2 <= medium < 96^2 <= large",
}


def describe_model(model, name_or_path: str) -> dict:
    """What was evaluated, enough to tell two runs apart (the checksum changes when any weight does)."""
    parameters = list(model.parameters())
    return {
        "name_or_path": str(name_or_path),
        "class": type(model).__name__,
        "model_type": getattr(getattr(model, "config", None), "model_type", None),
        "num_parameters": int(sum(p.numel() for p in parameters)),
        "dtype": str(parameters[0].dtype).replace("torch.", ""),
        "parameter_checksum": float(sum(p.detach().double().abs().sum().item() for p in parameters)),
        "torch_version": torch.__version__,
    }


def build_report(
    model_results: list[dict], settings: ZeroShotEvalSettings, data: dict, extra: dict | None = None
) -> dict:
    """The full results document: one entry per model (its description, mask selection and summary)."""
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": asdict(settings),
        "data": data,
        "units": UNITS,
        "models": model_results,
        **(extra or {}),
    }


def _fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _miou_cell(summary: dict) -> str:
    return _fmt(summary["miou"], 1)


def markdown_tables(report: dict) -> str:
    """Markdown: box-prompt mIoU by area, point-prompt mIoU per strategy and click count, detector-box AP."""
    models = report["models"]
    names = [f"{m['model']['name_or_path']} ({m['model']['class']})" for m in models]
    lines = [
        f"Data: {report['data'].get('annotation_file')} ({models[0]['summary']['num_images'] if models else 0} "
        f"images). Mask kept per prompt: see the `mask` column. mIoU in %, AP as COCOeval fractions.",
        "",
    ]
    if models and "box_prompts" in models[0]["summary"]:
        lines += ["| Model | Mask | Box mIoU | small | medium | large | objects |", "|---|---|---|---|---|---|---|"]
        for name, m in zip(names, models):
            s = m["summary"]["box_prompts"]
            cells = [_fmt(s["miou"], 1)] + [_fmt(s[f"miou_{b}"], 1) for b in AREA_BUCKETS] + [str(s["count"])]
            lines.append(f"| {name} | {m['mask_selection']} | " + " | ".join(cells) + " |")
        lines.append("")
    if models and "point_prompts" in models[0]["summary"]:
        columns = [
            (strategy, key)
            for strategy, by_clicks in models[0]["summary"]["point_prompts"].items()
            for key in by_clicks
        ]
        header = " | ".join(f"{key.replace('_', ' ')} ({strategy})" for strategy, key in columns)
        lines += [f"| Model | Mask | {header} |", "|---|---|" + "---|" * len(columns)]
        for name, m in zip(names, models):
            points = m["summary"]["point_prompts"]
            cells = [_miou_cell(points[strategy][key]) for strategy, key in columns]
            lines.append(f"| {name} | {m['mask_selection']} | " + " | ".join(cells) + " |")
        lines.append("")
    if models and "detector_boxes" in models[0]["summary"]:
        lines += [
            f"Detector boxes: {report['data'].get('detections')}",
            "",
            "| Model | Mask | " + " | ".join(AP_NAMES) + " | detections |",
            "|---|---|" + "---|" * (len(AP_NAMES) + 1),
        ]
        for name, m in zip(names, models):
            s = m["summary"]["detector_boxes"]
            cells = [_fmt(s[k], 3) for k in AP_NAMES] + [str(s["num_detections"])]
            lines.append(f"| {name} | {m['mask_selection']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_report(report: dict, output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """`results.json` and `results.md` in `output_dir`, written atomically."""
    output_dir = Path(output_dir)
    json_path, md_path = output_dir / "results.json", output_dir / "results.md"
    write_json_atomic(json_path, report, indent=2)
    write_text_atomic(md_path, markdown_tables(report))
    return json_path, md_path
