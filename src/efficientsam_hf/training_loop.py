"""The part the training scripts share: finding a checkpoint to resume from, and train -> save -> report."""

from __future__ import annotations

import logging
import os
import resource

from transformers.trainer_utils import get_last_checkpoint


def find_last_checkpoint(training_args, logger: logging.Logger) -> str | None:
    """The newest `checkpoint-*` in `output_dir` when training, so `--resume_from_checkpoint True` can use it."""
    if not (os.path.isdir(training_args.output_dir) and training_args.do_train):
        return None
    last_checkpoint = get_last_checkpoint(training_args.output_dir)
    if last_checkpoint is not None and training_args.resume_from_checkpoint is None:
        logger.info(f"Checkpoint found at {last_checkpoint}; pass --resume_from_checkpoint True to continue from it.")
    return last_checkpoint


def train_and_save(trainer, training_args, last_checkpoint: str | None) -> dict:
    """`trainer.train` (resuming as asked), then save the model, the metrics (with peak RSS) and the trainer state."""
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint in ("True", "true"):
        checkpoint = last_checkpoint or True
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    metrics = dict(train_result.metrics)
    metrics["train_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    return metrics
