#!/usr/bin/env python
"""SAMI pretraining of the EfficientSAM ViT with transformers' `Trainer` (shaped like transformers'
`examples/pytorch/image-pretraining/run_mae.py`).

    python training/run_sami_pretraining.py --do_train --train_dir IMAGES --output_dir OUT --teacher_name_or_path \
        facebook/sam-vit-huge --precompute_teacher_features --teacher_features_cache_dir CACHE \
        --per_device_train_batch_size 128 --num_train_epochs 400

Runs unchanged under `torchrun --nproc_per_node N` or `accelerate launch`; `--resume_from_checkpoint` (a path,
or `True` for the newest `checkpoint-*` in `--output_dir`) continues exactly where a run stopped. Afterwards,
`python -m efficientsam_hf.sami.export OUT EXPORTED` makes an `EfficientSamModel` folder for finetuning.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

import transformers
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed

from efficientsam_hf import EfficientSamConfig
from efficientsam_hf.sami import (
    DEFAULT_TEACHER,
    EfficientSamForSamiPretraining,
    EfficientSamSamiConfig,
    SamiPretrainingDataset,
    SamiTeacher,
    SamiTransform,
    collate_sami,
    load_images,
    precompute_teacher_features,
)
from efficientsam_hf.sami.data import SetEpochCallback
from efficientsam_hf.training_loop import find_last_checkpoint, train_and_save

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    """Which student and teacher to train with."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "SAMI checkpoint to start from (default: a freshly initialised student)."}
    )
    config_name: str | None = field(default=None, metadata={"help": "SAMI config (folder or json) to start from."})
    student_size: str = field(default="ti", metadata={"help": "Student ViT when no config is given: 'ti' or 's'."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Overrides of the SAMI config, e.g. 'decoder_num_hidden_layers=4,loss_type=cosine'."},
    )
    vision_config_overrides: str | None = field(
        default=None, metadata={"help": "Overrides of the student's vision config, e.g. 'num_hidden_layers=2'."}
    )
    mask_ratio: float = field(default=0.75, metadata={"help": "Fraction of tokens hidden from the student."})
    teacher_name_or_path: str = field(
        default=DEFAULT_TEACHER,
        metadata={"help": "Frozen teacher (Hub id or folder); SAM's image encoder by default."},
    )
    teacher_num_prefix_tokens: int | None = field(
        default=None, metadata={"help": "Special tokens before the patch tokens of a token-output teacher."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are cached."})


@dataclass
class DataTrainingArguments:
    """Which images, and whether the teacher's features are computed once and cached."""

    dataset_name: str | None = field(default=None, metadata={"help": "A `datasets` image dataset (Hub or local)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration name."})
    train_dir: str | None = field(default=None, metadata={"help": "A local folder of images (searched recursively)."})
    dataset_split: str = field(default="train", metadata={"help": "Split of `dataset_name` to train on."})
    image_column_name: str = field(default="image", metadata={"help": "Column holding the images."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set (debugging)."})
    image_size: int | None = field(
        default=None, metadata={"help": "Crop size; must equal the student's pretrain_image_size (224)."}
    )
    crop_min_scale: float = field(default=0.2, metadata={"help": "RandomResizedCrop's minimum area fraction."})
    precompute_teacher_features: bool = field(
        default=False, metadata={"help": "Run the teacher once per image and read its features from a cache."}
    )
    teacher_features_cache_dir: str | None = field(
        default=None, metadata={"help": "Cache folder (default: OUTPUT_DIR/teacher_features)."}
    )
    teacher_cache_grid_size: int | None = field(
        default=None, metadata={"help": "Pool cached teacher maps to this grid (default: the teacher's own)."}
    )
    precompute_batch_size: int = field(default=8, metadata={"help": "Batch size of the teacher while caching."})


@dataclass
class SamiTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the paper's defaults (MAE recipe)."""

    base_learning_rate: float = field(
        default=1.5e-4, metadata={"help": "lr = base_learning_rate * total_batch_size / 256."}
    )
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warmup steps, or a fraction of them if < 1."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep all columns (the model uses them)."})
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "Every trained parameter is used in every step (the neck is not part of SAMI)."},
    )


def parse_overrides(text: str | None, name: str) -> dict:
    """'a=1,b=x' -> {'a': 1, 'b': 'x'} (values parsed as int, float, bool or left as strings)."""
    result = {}
    for item in filter(None, (text or "").split(",")):
        if "=" not in item:
            raise ValueError(f"{name} must be comma-separated key=value pairs, got {item!r}.")
        key, value = (part.strip() for part in item.split("=", 1))
        for cast in (int, float):
            try:
                result[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            result[key] = {"true": True, "false": False}.get(value.lower(), value)
    return result


def build_model(model_args: ModelArguments, teacher: SamiTeacher) -> EfficientSamForSamiPretraining:
    """A fresh SAMI model (Ti or S student, overrides applied) or one loaded from a checkpoint."""
    if model_args.model_name_or_path:
        model = EfficientSamForSamiPretraining.from_pretrained(model_args.model_name_or_path)
    else:
        if model_args.config_name:
            config = EfficientSamSamiConfig.from_pretrained(model_args.config_name)
        else:
            sizes = {"ti": EfficientSamConfig.efficientsam_ti, "s": EfficientSamConfig.efficientsam_s}
            if model_args.student_size not in sizes:
                raise ValueError(f"student_size must be one of {sorted(sizes)}, got {model_args.student_size!r}.")
            vision = sizes[model_args.student_size]().vision_config.to_dict()
            vision.update(parse_overrides(model_args.vision_config_overrides, "vision_config_overrides"))
            config = EfficientSamSamiConfig(vision_config=vision)
        config.mask_ratio = model_args.mask_ratio
        config.teacher_hidden_size = teacher.hidden_size
        config.teacher_name_or_path = model_args.teacher_name_or_path
        config = EfficientSamSamiConfig(
            **{**config.to_dict(), **parse_overrides(model_args.config_overrides, "config_overrides")}
        )
        model = EfficientSamForSamiPretraining(config)
    model.set_teacher(teacher)
    return model


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, SamiTrainingArguments))
    if argv is None and len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(json_file=os.path.abspath(sys.argv[1]))
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.warning(
        f"Process rank: {training_args.process_index}, device: {training_args.device}, n_gpu: {training_args.n_gpu}, "
        f"distributed: {training_args.parallel_mode.value == 'distributed'}"
    )

    last_checkpoint = find_last_checkpoint(training_args, logger)
    set_seed(training_args.seed)

    teacher = SamiTeacher.from_pretrained(
        model_args.teacher_name_or_path, num_prefix_tokens=model_args.teacher_num_prefix_tokens
    )
    model = build_model(model_args, teacher)
    image_size = model.config.vision_config.pretrain_image_size
    if data_args.image_size is not None and data_args.image_size != image_size:
        raise ValueError(
            f"image_size must equal the student's pretrain_image_size ({image_size}), got {data_args.image_size}."
        )

    images = load_images(
        data_args.dataset_name,
        data_args.dataset_config_name,
        data_args.train_dir,
        data_args.dataset_split,
        data_args.image_column_name,
        model_args.cache_dir,
    )
    if data_args.max_train_samples is not None:
        images = images.select(range(min(data_args.max_train_samples, len(images))))

    teacher_features = None
    if data_args.precompute_teacher_features:
        cache_dir = data_args.teacher_features_cache_dir or os.path.join(training_args.output_dir, "teacher_features")
        with training_args.main_process_first(desc="teacher features"):
            teacher_features = precompute_teacher_features(
                images,
                teacher,
                cache_dir,
                image_column=data_args.image_column_name,
                source=data_args.train_dir
                or f"{data_args.dataset_name}/{data_args.dataset_config_name}/{data_args.dataset_split}",
                batch_size=data_args.precompute_batch_size,
                grid_size=data_args.teacher_cache_grid_size,
            )
        model.set_teacher(None)  # targets come from the cache only

    train_dataset = SamiPretrainingDataset(
        images,
        SamiTransform(size=image_size, scale=(data_args.crop_min_scale, 1.0)),
        num_tokens=model.config.grid_size**2,
        image_column=data_args.image_column_name,
        seed=training_args.seed,
        teacher_features=teacher_features,
    )

    total_train_batch_size = (
        training_args.train_batch_size * training_args.gradient_accumulation_steps * training_args.world_size
    )
    training_args.learning_rate = training_args.base_learning_rate * total_train_batch_size / 256
    logger.info(f"Total batch size {total_train_batch_size}: learning rate {training_args.learning_rate:.3e}.")

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=collate_sami,
        callbacks=[SetEpochCallback(train_dataset)],
    )
    return train_and_save(trainer, training_args, last_checkpoint) if training_args.do_train else {}


if __name__ == "__main__":
    main()
