"""What a zero-shot evaluation run measures: one dataclass, parsed by the script with HfArgumentParser."""

from __future__ import annotations

from dataclasses import dataclass, field

from .clicks import FIRST_CLICK_STRATEGIES


@dataclass
class ZeroShotEvalSettings:
    """Prompt protocols and mask selection. Everything here goes into the results and the cache fingerprint."""

    box_prompts: bool = field(default=True, metadata={"help": "Evaluate mIoU with ground-truth box prompts."})
    point_strategies: list[str] = field(
        default_factory=lambda: ["center", "random"],
        metadata={"help": f"First-click strategies to evaluate, from {FIRST_CLICK_STRATEGIES}; empty for none."},
    )
    num_clicks: list[int] = field(
        default_factory=lambda: [1, 3],
        metadata={"help": "Click counts to report; clicks after the first correct the largest error region."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the 'random' first click (combined with the object id)."})
    multimask_output: bool = field(
        default=True,
        metadata={
            "help": "Keep the multimask output with the highest predicted IoU per prompt; False keeps the "
            "single-mask output."
        },
    )
    prompt_batch_size: int = field(default=64, metadata={"help": "Prompts decoded per forward call."})
    max_detections_per_image: int = field(
        default=100, metadata={"help": "Highest-scoring detections kept per image (COCOeval counts 100)."}
    )

    def __post_init__(self):
        unknown = [s for s in self.point_strategies if s not in FIRST_CLICK_STRATEGIES]
        if unknown:
            raise ValueError(f"point_strategies must be in {FIRST_CLICK_STRATEGIES}, got {unknown}.")
        if any(not isinstance(n, int) or n < 1 for n in self.num_clicks):
            raise ValueError(f"num_clicks must be positive integers, got {self.num_clicks}.")
        if self.point_strategies and not self.num_clicks:
            raise ValueError("num_clicks must not be empty when point_strategies are given.")
        if self.prompt_batch_size < 1:
            raise ValueError(f"prompt_batch_size must be >= 1, got {self.prompt_batch_size}.")
        if self.max_detections_per_image < 1:
            raise ValueError(f"max_detections_per_image must be >= 1, got {self.max_detections_per_image}.")
        self.point_strategies = list(dict.fromkeys(self.point_strategies))
        self.num_clicks = sorted(set(self.num_clicks))
