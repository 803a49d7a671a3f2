"""`efficientsam-hf` command line: argument parsing and exit codes only; the work lives in the package modules.

Exit status 0 on success, 2 on bad input (missing/unreadable files, malformed prompts, prompts outside the image,
unusable checkpoints), printed as one line without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class UsageError(ValueError):
    """Bad input from the command line: reported in one line, exit status 2."""


def _subcommands() -> dict[str, tuple[str, Callable, Callable]]:
    """name -> (help, add_arguments(parser), run(args) -> int). Imported lazily so `--help` stays fast."""
    from . import convert

    commands = {
        "convert": (
            "convert an official checkpoint into a save_pretrained folder",
            convert.add_arguments,
            convert.run,
        ),
    }
    try:
        from . import segment_command

        commands["segment"] = (
            "segment an image and write a picture",
            segment_command.add_segment_arguments,
            segment_command.run_segment,
        )
        commands["annotate"] = (
            "segment everything in a folder of images into one COCO file",
            segment_command.add_annotate_arguments,
            segment_command.run_annotate,
        )
    except ImportError as error:  # pragma: no cover - only while a subcommand's module is absent
        if "segment_command" not in str(error):
            raise
    try:
        from . import onnx_export

        commands["export-onnx"] = (
            "export encoder and decoder to ONNX, verified",
            onnx_export.add_arguments,
            onnx_export.run,
        )
    except ImportError as error:  # pragma: no cover
        if "onnx_export" not in str(error):
            raise
    return commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="efficientsam-hf", description="EfficientSAM for the Hugging Face stack.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in _subcommands().items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .checkpoints import CheckpointUnavailableError
    from .convert import ConversionError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (
        UsageError,
        ConversionError,
        CheckpointUnavailableError,
        FileNotFoundError,
        IsADirectoryError,
        ValueError,
        TypeError,
    ) as error:
        print(f"efficientsam-hf {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
