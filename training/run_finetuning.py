#!/usr/bin/env python
"""Finetune EfficientSAM on SA-1B-format or COCO-instances data with transformers' `Trainer`, following SAM's recipe
(shaped like transformers' `examples/pytorch/image-pretraining/run_mae.py`).

    python training/run_finetuning.py --model_name_or_path CONVERTED_OR_SAMI_FOLDER \
        --train_data SA1B_FOLDER --validation_data COCO/instances.json \
        --do_train --do_eval --eval_strategy epoch --output_dir OUT --per_device_train_batch_size 2

`--model_name_or_path` is an `EfficientSamModel` folder (converted official weights, a SAMI export, a previous run)
or an official `.pt` checkpoint; without it, `--config_name` (`efficientsam_ti`, `efficientsam_s`, or a config
folder/json) gives a fresh model. Defaults are the paper's: AdamW (0.9, 0.999), lr 4e-4 with linear decay, weight
decay 0.1, no augmentation, 1024x1024 input. `eval_miou` is the mean IoU of every validation mask at its original
resolution (tight boxes by default). Runs unchanged under `torchrun --nproc_per_node N` or `accelerate launch`
(on CPU add `--use_cpu True`, else transformers does not start the gloo process group);
`--resume_from_checkpoint PATH` (or `True` for the newest `checkpoint-*` in `--output_dir`) continues exactly where
a run stopped. `OUT` and every `checkpoint-*` are folders that `EfficientSamModel.from_pretrained`, the pipeline and
the CLI load.

Measured (EfficientSAM-Ti from the synthetic converted checkpoint, batch 2, 16 masks per image, 1024 input, fp32,
this 2-core CPU shared with other jobs, load average ~10): 0.01 steps/s (~100 s per step wall, ~35 CPU-s per step),
peak RSS 7.2 GB:
    python training/run_finetuning.py --model_name_or_path ../shared/reference/efficient_sam_vitt_synthetic_fp16.pt \
        --train_data ../shared/data/coco_val2017_dev/instances.json --max_train_samples 6 --do_train --max_steps 3 \
        --per_device_train_batch_size 2 --save_strategy no --logging_steps 1 --output_dir /tmp/ti
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import transformers
from transformers import HfArgumentParser, TrainingArguments, set_seed

from efficientsam_hf import EfficientSamConfig, EfficientSamModel, EfficientSamProcessor
from efficientsam_hf.finetuning import (
    EfficientSamFinetuningCollator,
    EfficientSamFinetuningTrainer,
    EfficientSamForFinetuning,
    EpochCallback,
    compute_miou,
    load_coco_dataset,
    load_sa1b_dataset,
)
from efficientsam_hf.training_loop import find_last_checkpoint, train_and_save

logger = logging.getLogger(__name__)

PRESETS = {"efficientsam_ti": EfficientSamConfig.efficientsam_ti, "efficientsam_s": EfficientSamConfig.efficientsam_s}


@dataclass
class ModelArguments:
    """Which model to start from, what to freeze, and the loss weights."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "EfficientSamModel folder (converted, SAMI export, earlier run) or official .pt checkpoint."
        },
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "Fresh model from 'efficientsam_ti', 'efficientsam_s' or a config folder/json."},
    )
    processor_name: str | None = field(
        default=None, metadata={"help": "Processor folder (default: the model folder's, else the official settings)."}
    )
    freeze_vision_encoder: bool = field(default=False, metadata={"help": "Do not train the image encoder."})
    freeze_prompt_encoder: bool = field(default=False, metadata={"help": "Do not train the prompt encoder."})
    focal_weight: float = field(default=20.0, metadata={"help": "Weight of the focal loss (SAM: 20)."})
    dice_weight: float = field(default=1.0, metadata={"help": "Weight of the dice loss (SAM: 1)."})
    iou_weight: float = field(default=1.0, metadata={"help": "Weight of the IoU-prediction MSE (SAM: 1)."})


@dataclass
class DataTrainingArguments:
    """Which annotations, and how prompts are drawn."""

    train_data: str | None = field(
        default=None, metadata={"help": "SA-1B folder (sa_*.jpg + sa_*.json) or COCO instances .json."}
    )
    train_image_dir: str | None = field(default=None, metadata={"help": "COCO images (default: next to the json)."})
    validation_data: str | None = field(default=None, metadata={"help": "Validation SA-1B folder or COCO .json."})
    validation_image_dir: str | None = field(default=None, metadata={"help": "COCO validation images folder."})
    validation_split_percentage: float = field(
        default=0.0, metadata={"help": "Without --validation_data, hold out this fraction of the training images."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many validation images."})
    max_masks_per_image: int = field(default=16, metadata={"help": "Masks (queries) drawn per image per step."})
    box_probability: float = field(default=0.5, metadata={"help": "Chance that a mask's first prompt is a box."})
    num_correction_clicks: int = field(
        default=0, metadata={"help": "Error-region clicks after the first prompt (0-4; SAM's interactive rounds)."}
    )
    eval_prompt: str = field(default="box", metadata={"help": "Validation prompt: 'box' (tight) or 'point'."})
    include_crowd: bool = field(default=False, metadata={"help": "Keep COCO iscrowd regions."})


@dataclass
class FinetuningTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the paper's defaults."""

    learning_rate: float = field(default=4e-4, metadata={"help": "AdamW learning rate (linear decay)."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep all columns (the collator uses them)."})
    ddp_find_unused_parameters: bool | None = field(
        default=True, metadata={"help": "Needed under DDP: a batch of boxes leaves the multimask heads unused."}
    )


def load_split(path: str, image_dir: str | None, include_crowd: bool, max_images: int | None):
    """An SA-1B folder or a COCO instances json -> `Dataset`."""
    if Path(path).is_dir():
        return load_sa1b_dataset(path, max_images=max_images)
    if path.endswith(".json"):
        return load_coco_dataset(path, image_dir, include_crowd=include_crowd, max_images=max_images)
    raise ValueError(f"train_data / validation_data must be an SA-1B folder or a COCO .json file, got {path!r}.")


def build_model(model_args: ModelArguments) -> EfficientSamModel:
    """Load or create the model, then freeze what was asked."""
    source = model_args.model_name_or_path
    if source and Path(source).is_file() and source.endswith((".pt", ".pth")):
        from efficientsam_hf.convert import load_official_checkpoint

        model = load_official_checkpoint(source)
    elif source:
        model = EfficientSamModel.from_pretrained(source)
    elif model_args.config_name in PRESETS:
        model = EfficientSamModel(PRESETS[model_args.config_name]())
    elif model_args.config_name:
        model = EfficientSamModel(EfficientSamConfig.from_pretrained(model_args.config_name))
    else:
        raise ValueError("Give --model_name_or_path (folder or .pt) or --config_name to build a fresh model.")
    model.train()
    for module, frozen in (
        (model.vision_encoder, model_args.freeze_vision_encoder),
        (model.prompt_encoder, model_args.freeze_prompt_encoder),
    ):
        module.requires_grad_(not frozen)
    return model


def build_processor(model_args: ModelArguments) -> EfficientSamProcessor:
    """`--processor_name`, else the processor saved with the model, else the official settings."""
    if model_args.processor_name:
        return EfficientSamProcessor.from_pretrained(model_args.processor_name)
    folder = Path(model_args.model_name_or_path or "")
    if model_args.model_name_or_path and any(
        (folder / name).is_file() for name in ("processor_config.json", "preprocessor_config.json")
    ):
        return EfficientSamProcessor.from_pretrained(str(folder))
    return EfficientSamProcessor()


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, FinetuningTrainingArguments))
    if argv is None and len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(json_file=os.path.abspath(sys.argv[1]))
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if data_args.eval_prompt not in ("box", "point"):
        raise ValueError(f"eval_prompt must be 'box' or 'point', got {data_args.eval_prompt!r}.")

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.warning(
        f"Process rank: {training_args.process_index}, device: {training_args.device}, "
        f"distributed: {training_args.parallel_mode.value == 'distributed'}"
    )

    last_checkpoint = find_last_checkpoint(training_args, logger)
    set_seed(training_args.seed)

    # Data ------------------------------------------------------------------------------------------------------
    train_dataset = eval_dataset = None
    if data_args.train_data:
        train_dataset = load_split(
            data_args.train_data, data_args.train_image_dir, data_args.include_crowd, data_args.max_train_samples
        )
    if data_args.validation_data:
        eval_dataset = load_split(
            data_args.validation_data,
            data_args.validation_image_dir,
            data_args.include_crowd,
            data_args.max_eval_samples,
        )
    elif train_dataset is not None and data_args.validation_split_percentage > 0:
        split = train_dataset.train_test_split(
            test_size=data_args.validation_split_percentage, seed=training_args.seed
        )
        train_dataset, eval_dataset = split["train"], split["test"]
        if data_args.max_eval_samples is not None:
            eval_dataset = eval_dataset.select(range(min(data_args.max_eval_samples, len(eval_dataset))))
    if training_args.do_train and train_dataset is None:
        raise ValueError("--do_train needs --train_data.")
    if (training_args.do_eval or training_args.eval_strategy != "no") and eval_dataset is None:
        raise ValueError("Evaluation needs --validation_data or --validation_split_percentage > 0.")

    # Model -----------------------------------------------------------------------------------------------------
    processor = build_processor(model_args)
    model = EfficientSamForFinetuning(
        build_model(model_args),
        processor,
        num_correction_clicks=data_args.num_correction_clicks,
        focal_weight=model_args.focal_weight,
        dice_weight=model_args.dice_weight,
        iou_weight=model_args.iou_weight,
    )
    collator = EfficientSamFinetuningCollator(
        processor,
        max_masks_per_image=data_args.max_masks_per_image,
        box_probability=data_args.box_probability,
        seed=training_args.seed,
    )
    eval_collator = EfficientSamFinetuningCollator(
        processor,
        max_masks_per_image=data_args.max_masks_per_image,
        box_probability=1.0 if data_args.eval_prompt == "box" else 0.0,
        box_noise=False,
        seed=training_args.seed,
        train=False,
        return_original_masks=True,
    )
    trainer = EfficientSamFinetuningTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        data_collator=collator,
        eval_data_collator=eval_collator,
        compute_metrics=compute_miou,
        callbacks=[EpochCallback(collator)],
    )

    metrics = {}
    if training_args.do_train:
        metrics.update(train_and_save(trainer, training_args, last_checkpoint))
    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    return metrics


if __name__ == "__main__":
    main()
