"""The `segment` and `annotate` subcommands: argument parsing, image loading, and writing pictures/COCO files.

`segment` prompts one image (points, boxes) with the predictor, or segments everything with the mask-generation
pipeline when no prompt is given, and writes a picture (and optionally the masks). `annotate` segments everything in
a folder into one COCO file; each finished image is written atomically to `<output>.parts/`, so an interrupted run
resumes where it stopped, and under `accelerate launch` / `torchrun` every process takes its share of the images
(`PartialState.split_between_processes`) while the main process merges one file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _usage_error(message: str) -> Exception:
    from .cli import UsageError

    return UsageError(message)


# --------------------------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------------------------
def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model", default=None, help="converted folder or Hub id (default: official EfficientSAM-Ti, downloaded once)"
    )
    source.add_argument("--checkpoint", default=None, help="official .pt / .pt.zip checkpoint, converted and cached")


def _add_everything_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--points-per-side", type=int, default=32, help="grid of point prompts (default 32x32)")
    parser.add_argument("--points-per-batch", type=int, default=64, help="point prompts decoded per model call")
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88, help="keep masks with predicted IoU above")
    parser.add_argument("--stability-score-thresh", type=float, default=0.95, help="keep masks at least this stable")


def add_segment_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("image", help="image file")
    parser.add_argument(
        "--point", action="append", default=[], metavar="X,Y[,LABEL]", help="point in pixels; LABEL 1 (default) or 0"
    )
    parser.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1", help="box in pixels")
    parser.add_argument("--everything", action="store_true", help="segment everything (the default with no prompt)")
    _add_model_arguments(parser)
    parser.add_argument("--output", required=True, help="picture to write (PNG)")
    parser.add_argument(
        "--masks-out",
        default=None,
        help="also write the masks: .png (label image, 0 = background) or .json (COCO RLE)",
    )
    _add_everything_arguments(parser)
    return parser


def add_annotate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("folder", help="folder of images (top level only)")
    parser.add_argument("--output", required=True, help="COCO annotations file to write (.json)")
    _add_model_arguments(parser)
    _add_everything_arguments(parser)
    return parser


def parse_point(text: str) -> tuple[float, float, int]:
    """'X,Y' or 'X,Y,LABEL' -> (x, y, label)."""
    parts = text.split(",")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
        label = int(parts[2]) if len(parts) == 3 else 1
        if label not in (0, 1) or not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError
    except ValueError:
        raise _usage_error(
            f"--point {text!r} must be X,Y or X,Y,LABEL with numbers X, Y and LABEL 1 (positive) or 0 (negative)."
        ) from None
    return x, y, label


def parse_box(text: str) -> tuple[float, float, float, float]:
    """'X0,Y0,X1,Y1' -> floats, with x0 <= x1 and y0 <= y1."""
    try:
        values = tuple(float(v) for v in text.split(","))
        if len(values) != 4 or not np.isfinite(values).all():
            raise ValueError
    except ValueError:
        raise _usage_error(f"--box {text!r} must be X0,Y0,X1,Y1 (four numbers, pixels).") from None
    if values[2] < values[0] or values[3] < values[1]:
        raise _usage_error(f"--box {text!r} must have X0 <= X1 and Y0 <= Y1.")
    return values


def _check_inside(what: str, text: str, xs, ys, width: int, height: int) -> None:
    if min(xs) < 0 or min(ys) < 0 or max(xs) > width or max(ys) > height:
        raise _usage_error(
            f"{what} {text} lies outside the image ({width}x{height} pixels, x in [0, {width}], y in [0, {height}])."
        )


# --------------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------------
def load_image(path: str | os.PathLike) -> Image.Image:
    """RGB image, or a UsageError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise _usage_error(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as error:
        raise _usage_error(f"cannot read image {path}: {error}") from None


def load_model_and_processor(model: str | None, checkpoint: str | None):
    """(model, processor) from --model / --checkpoint / the cached official Ti, with one-line errors."""
    from .checkpoints import CheckpointUnavailableError, resolve_model
    from .modeling_efficientsam import EfficientSamModel
    from .processing_efficientsam import EfficientSamProcessor

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise _usage_error(f"checkpoint not found: {checkpoint}")
    try:
        source = resolve_model(model=model, checkpoint=checkpoint)
    except CheckpointUnavailableError as error:
        raise _usage_error(str(error)) from None
    try:
        loaded = EfficientSamModel.from_pretrained(source).eval()
    except OSError as error:
        raise _usage_error(f"cannot load the model {source!r}: {str(error).splitlines()[0]}") from None
    try:
        processor = EfficientSamProcessor.from_pretrained(source)
    except (OSError, ValueError):
        processor = EfficientSamProcessor()
    return loaded, processor


# --------------------------------------------------------------------------------------------------------------------
# Writing (atomically: temp file in the same folder, then os.replace)
# --------------------------------------------------------------------------------------------------------------------
def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(path: Path, data) -> None:
    def write(temporary):
        with open(temporary, "w") as stream:
            json.dump(data, stream)

    _atomic_write(path, write)


def write_png(path: Path, image: Image.Image) -> None:
    _atomic_write(path, lambda temporary: image.save(temporary, format="PNG"))


def masks_to_annotations(masks: np.ndarray, scores) -> list[dict]:
    """(N, H, W) bool masks -> COCO annotation dicts (compressed RLE, area, xywh bbox, predicted IoU)."""
    from pycocotools import mask as mask_utils

    from .mask_generation import coco_annotation

    return [
        coco_annotation(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))), score)
        for mask, score in zip(masks, scores)
    ]


def coco_document(images: list[dict]) -> dict:
    """Per-image records `{file_name, height, width, annotations}` -> one COCO dict with numbered ids."""
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object", "supercategory": "object"}]}
    for image_id, record in enumerate(images, start=1):
        coco["images"].append(
            {"id": image_id, "file_name": record["file_name"], "height": record["height"], "width": record["width"]}
        )
        for annotation in record["annotations"]:
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    **annotation,
                }
            )
    return coco


# --------------------------------------------------------------------------------------------------------------------
# segment
# --------------------------------------------------------------------------------------------------------------------
def segment_everything(model, processor, image: Image.Image, args) -> list[dict]:
    """COCO annotation dicts of every mask the mask-generation pipeline finds (compressed RLE)."""
    from transformers import pipeline

    import efficientsam_hf  # noqa: F401  (registers our pipeline for the task)

    generator = pipeline("mask-generation", model=model, image_processor=processor.image_processor, device="cpu")
    result = generator(
        image,
        points_per_crop=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        output_coco_annotations=True,
    )
    return result["annotations"]


def _check_everything_arguments(args) -> None:
    if args.points_per_side < 1:
        raise _usage_error(f"--points-per-side must be a positive integer, got {args.points_per_side}.")
    if args.points_per_batch < 1:
        raise _usage_error(f"--points-per-batch must be a positive integer, got {args.points_per_batch}.")
    for name in ("pred_iou_thresh", "stability_score_thresh"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise _usage_error(f"--{name.replace('_', '-')} must be in [0, 1], got {value}.")


def run_segment(args: argparse.Namespace) -> int:
    """Segment one image and write the picture (and the masks if asked)."""
    from pycocotools import mask as mask_utils

    from .predictor import EfficientSamPredictor
    from .visualization import draw_segmentation, masks_to_label_image

    points = [parse_point(text) for text in args.point]
    boxes = [parse_box(text) for text in args.box]
    if args.everything and (points or boxes):
        raise _usage_error("--everything cannot be combined with --point or --box.")
    _check_everything_arguments(args)
    if Path(args.output).suffix.lower() != ".png":
        raise _usage_error(f"--output must be a .png file, got {args.output}.")
    if args.masks_out is not None and Path(args.masks_out).suffix.lower() not in (".png", ".json"):
        raise _usage_error(f"--masks-out must end in .png or .json, got {args.masks_out}.")
    image = load_image(args.image)
    width, height = image.size
    for text, (x, y, _) in zip(args.point, points):
        _check_inside("--point", text, [x], [y], width, height)
    for text, box in zip(args.box, boxes):
        _check_inside("--box", text, box[0::2], box[1::2], width, height)

    model, processor = load_model_and_processor(args.model, args.checkpoint)
    if points or boxes:
        predictor = EfficientSamPredictor(model, processor)
        predictor.set_image(image)
        xy = [[x, y] for x, y, _ in points]
        labels = [label for _, _, label in points]
        n_queries = max(len(boxes), 1)  # every box is a query; points join each of them
        prediction = predictor.predict(
            points=[xy] * n_queries if points else None,
            labels=[labels] * n_queries if points else None,
            boxes=boxes or None,
        )
        masks = prediction.masks[:, 0].numpy()  # best of the three candidates per query
        scores = prediction.scores[:, 0].tolist()
        annotations = masks_to_annotations(masks, scores)
    else:
        annotations = segment_everything(model, processor, image, args)
        masks = (
            np.stack([mask_utils.decode(a["segmentation"]).astype(bool) for a in annotations]) if annotations else None
        )

    picture = draw_segmentation(
        image, masks, points=[[x, y] for x, y, _ in points], labels=[label for *_, label in points], boxes=boxes
    )
    write_png(Path(args.output), picture)
    if args.masks_out is not None:
        target = Path(args.masks_out)
        if target.suffix.lower() == ".json":
            record = {"file_name": Path(args.image).name, "height": height, "width": width, "annotations": annotations}
            write_json(target, coco_document([record]))
        else:
            empty = np.zeros((0, height, width), dtype=bool)
            write_png(
                target, Image.fromarray(masks_to_label_image(masks if masks is not None else empty, height, width))
            )
    print(f"wrote {args.output} ({len(annotations)} masks)" + (f" and {args.masks_out}" if args.masks_out else ""))
    return 0


# --------------------------------------------------------------------------------------------------------------------
# annotate
# --------------------------------------------------------------------------------------------------------------------
def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise _usage_error(f"folder not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise _usage_error(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return images


def _finished_records(output: Path, parts: Path) -> dict[str, dict]:
    """file_name -> record, from an earlier complete output file and from the per-image parts of an interrupted run."""
    done = {}
    if output.is_file():
        try:
            coco = json.loads(output.read_text())
            by_id = {}
            for image in coco["images"]:
                record = {key: image[key] for key in ("file_name", "height", "width")}
                by_id[image["id"]] = done[image["file_name"]] = {**record, "annotations": []}
            for annotation in coco["annotations"]:
                kept = {k: annotation[k] for k in ("segmentation", "area", "bbox", "predicted_iou") if k in annotation}
                by_id[annotation["image_id"]]["annotations"].append(kept)
        except (ValueError, KeyError, TypeError) as error:
            raise _usage_error(f"{output} exists but is not a COCO file this command wrote ({error}).") from None
    if parts.is_dir():
        for part in parts.glob("*.json"):
            record = json.loads(part.read_text())
            done[record["file_name"]] = record
    return done


def run_annotate(args: argparse.Namespace) -> int:
    """Segment everything in every image of a folder into one COCO file, resumable and multi-process."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    _check_everything_arguments(args)
    folder, output = Path(args.folder), Path(args.output)
    parts = output.with_name(output.name + ".parts")
    state = PartialState()
    images = list_images(folder)
    done = _finished_records(output, parts)
    todo = [path for path in images if path.name not in done]

    if todo:
        model, processor = load_model_and_processor(args.model, args.checkpoint)
        if state.is_main_process:
            parts.mkdir(parents=True, exist_ok=True)
        state.wait_for_everyone()
        with state.split_between_processes(todo) as mine:
            bar = tqdm(mine, desc=f"annotate (process {state.process_index})", disable=not state.is_local_main_process)
            for path in bar:
                image = load_image(path)
                annotations = segment_everything(model, processor, image, args)
                record = {
                    "file_name": path.name,
                    "height": image.height,
                    "width": image.width,
                    "annotations": annotations,
                }
                write_json(parts / f"{path.name}.json", record)
        state.wait_for_everyone()
        done = _finished_records(output, parts)

    if state.is_main_process:
        missing = [path.name for path in images if path.name not in done]
        if missing:
            raise _usage_error(f"{len(missing)} images were not annotated (e.g. {missing[0]}); run again to resume.")
        coco = coco_document([done[path.name] for path in images])
        write_json(output, coco)
        shutil.rmtree(parts, ignore_errors=True)
        print(f"wrote {output} ({len(coco['images'])} images, {len(coco['annotations'])} masks)")
    state.wait_for_everyone()
    return 0


__all__ = [
    "add_annotate_arguments",
    "add_segment_arguments",
    "run_annotate",
    "run_segment",
]
