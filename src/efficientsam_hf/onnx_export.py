"""Export EfficientSAM to two ONNX graphs that compute what the PyTorch model computes, verified with onnxruntime.

    efficientsam-hf export-onnx --model efficientsam-ti --output efficientsam-ti-onnx
    python -m efficientsam_hf.onnx_export --model efficient_sam_vitt.pt --output efficientsam-ti-onnx

Two graphs, so an image is encoded once and prompted many times (browser, phone, C++ service):
  - `encoder.onnx`: `pixel_values` (B, 3, 1024, 1024) -> `image_embeddings` (B, 256, 64, 64)
  - `prompt_decoder.onnx`: `image_embeddings` (B, 256, 64, 64), `input_points` (B, Q, N, 2) float32 in the 1024x1024
    model frame, `input_labels` (B, Q, N) int64 -> `iou_scores` (B, Q, 3), `pred_masks` (B, Q, 3, 256, 256) low-res
    logits. B, Q and N are dynamic; a box is two points labelled 2 and 3. Pre- and post-processing (coordinate
    rescaling, mask upsampling) stay in `EfficientSamProcessor`, exactly as for the PyTorch model.

Where the official ONNX export differs from its PyTorch model, this one does not: the position embedding is resized
bicubically (as in PyTorch), negative coordinates become padding points, and N is padded/truncated to
`max_num_points` inside the graph (concatenate padding, then slice: no shape-dependent Python branch is traced).
One numerical change is made, to the graph only: the decoder's GroupNorm is exported as means taken one axis at a
time, because onnxruntime's InstanceNormalization/ReduceMean accumulate ~1M values in one float32 sum and miss
PyTorch by ~1e-4 on the synthetic Ti checkpoint (staged means: ~1e-6). Every export is checked with
`onnx.checker` and compared with the PyTorch model on random images and prompts by onnxruntime (CPU); it fails
when the max abs error exceeds `atol` (1e-4).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .modeling_efficientsam import EfficientSamModel

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "prompt_decoder.onnx"
REPORT_FILE = "onnx_export.json"
INSTALL_HINT = "ONNX export needs onnx and onnxruntime: pip install 'efficientsam-hf[onnx]'"
DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4
# (batch, queries, points) of the random prompts checked after export: one query, the traced shape, a shape
# larger than the trace, a single point, and more points than the model keeps (truncated to max_num_points).
VERIFY_PROMPT_SHAPES = ((1, 1, 1), (2, 2, 3), (2, 3, 6), (1, 2, 9))


class OnnxVerificationError(RuntimeError):
    """The exported graphs and the PyTorch model disagree by more than the tolerance."""


@dataclass
class OnnxExportResult:
    """Where the graphs are and how far onnxruntime is from PyTorch (max abs error per output)."""

    output_dir: str
    encoder_path: str
    decoder_path: str
    opset_version: int
    atol: float
    max_abs_error: dict[str, float] = field(default_factory=dict)
    max_abs_value: dict[str, float] = field(default_factory=dict)

    @property
    def worst_error(self) -> float:
        return max(self.max_abs_error.values(), default=0.0)


def require_onnx():
    """Import onnx and onnxruntime, or raise ImportError saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return onnx, onnxruntime


# ----------------------------------------------------------------------------------------------------------------
# Export wrappers
# ----------------------------------------------------------------------------------------------------------------


class StagedGroupNorm(nn.Module):
    """`nn.GroupNorm` with every mean taken over one axis at a time, so onnxruntime sums short float32 runs.

    Same function as the wrapped GroupNorm (equal-sized groups make the mean of means the mean); only the order of
    the additions changes, which is what brings onnxruntime's result to PyTorch's.
    """

    def __init__(self, group_norm: nn.GroupNorm):
        super().__init__()
        self.num_groups, self.eps, self.affine = group_norm.num_groups, group_norm.eps, group_norm.affine
        self.weight, self.bias = group_norm.weight, group_norm.bias

    @staticmethod
    def _mean(values: torch.Tensor) -> torch.Tensor:
        for dim in range(values.ndim - 1, 1, -1):
            values = values.mean(dim, keepdim=True)
        return values

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shape = hidden_states.shape
        grouped = hidden_states.reshape(shape[0], self.num_groups, shape[1] // self.num_groups, *shape[2:])
        mean = self._mean(grouped)
        variance = self._mean((grouped - mean).pow(2))
        normalized = ((grouped - mean) / torch.sqrt(variance + self.eps)).reshape(shape)
        if not self.affine:
            return normalized
        extra = (1,) * (len(shape) - 2)
        return normalized * self.weight.reshape(-1, *extra) + self.bias.reshape(-1, *extra)


def _stage_group_norms(module: nn.Module) -> int:
    """Replace every `nn.GroupNorm` under `module` by a `StagedGroupNorm` in place; returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.GroupNorm):
            setattr(module, name, StagedGroupNorm(child))
            count += 1
        else:
            count += _stage_group_norms(child)
    return count


class EfficientSamOnnxEncoder(nn.Module):
    """`pixel_values` -> `image_embeddings`: the model's vision encoder, unchanged."""

    def __init__(self, model: EfficientSamModel):
        super().__init__()
        self.vision_encoder = model.vision_encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_encoder(pixel_values, return_dict=True).last_hidden_state


class EfficientSamOnnxPromptDecoder(nn.Module):
    """(`image_embeddings`, `input_points`, `input_labels`) -> (`iou_scores`, `pred_masks`), multimask output.

    Does what `EfficientSamModel.forward` does to point prompts without branching on N, so N stays dynamic:
    negative coordinates become -1 (padding), then `max_num_points` padding points are appended and the first
    `max_num_points` kept, which both pads short queries and truncates long ones.
    """

    def __init__(self, model: EfficientSamModel):
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.max_num_points = model.config.prompt_encoder_config.max_num_points
        # A constant of the weights: computed once here, stored in the graph as an initializer.
        with torch.no_grad():
            dense = model.get_image_wide_positional_embeddings().detach().clone()
        self.register_buffer("image_positional_embeddings", dense, persistent=False)

    def forward(self, image_embeddings, input_points, input_labels):
        points = torch.where(input_points >= 0, input_points, torch.full_like(input_points, -1.0))
        labels = input_labels.long()
        pad_points = torch.full_like(points[:, :, :1], -1.0).expand(-1, -1, self.max_num_points, -1)
        pad_labels = torch.full_like(labels[:, :, :1], -1).expand(-1, -1, self.max_num_points)
        points = torch.cat([points, pad_points], dim=2)[:, :, : self.max_num_points]
        labels = torch.cat([labels, pad_labels], dim=2)[:, :, : self.max_num_points]
        sparse_embeddings = self.prompt_encoder(points, labels).to(image_embeddings.dtype)
        pred_masks, iou_scores = self.mask_decoder(
            image_embeddings=image_embeddings,
            image_positional_embeddings=self.image_positional_embeddings,
            sparse_prompt_embeddings=sparse_embeddings,
            multimask_output=True,
        )
        return iou_scores, pred_masks


# ----------------------------------------------------------------------------------------------------------------
# Export and verification
# ----------------------------------------------------------------------------------------------------------------


def load_model(model_or_path) -> EfficientSamModel:
    """An `EfficientSamModel`, a `save_pretrained` folder or Hub id, or an official checkpoint file (.pt/.zip)."""
    if isinstance(model_or_path, EfficientSamModel):
        return model_or_path
    if not isinstance(model_or_path, (str, os.PathLike)):
        raise TypeError(
            "model_or_path must be an EfficientSamModel, a save_pretrained folder / Hub id or an official checkpoint "
            f"file, got {type(model_or_path).__name__}."
        )
    path = Path(model_or_path)
    if path.is_file():
        from .convert import load_official_checkpoint

        return load_official_checkpoint(path)
    try:
        return EfficientSamModel.from_pretrained(str(model_or_path))
    except OSError as error:
        raise FileNotFoundError(
            f"model_or_path {str(model_or_path)!r} is neither a checkpoint file, a save_pretrained folder nor a "
            f"loadable Hub id ({error})."
        ) from error


def _export_copy(model: EfficientSamModel) -> EfficientSamModel:
    """A float32, eval-mode copy with staged GroupNorms; the caller's model is left untouched."""
    exported = copy.deepcopy(model).float().eval()
    _stage_group_norms(exported.mask_decoder)
    return exported


def _example_inputs(model: EfficientSamModel):
    """Trace inputs: batch 2, 2 queries of 3 points, so no axis is traced at size 1 (which could be specialised)."""
    config = model.config
    generator = torch.Generator().manual_seed(0)
    size, channels = config.vision_config.image_size, config.vision_config.num_channels
    pixel_values = torch.randn(2, channels, size, size, generator=generator)
    grid = config.vision_config.grid_size
    image_embeddings = torch.randn(2, config.vision_config.output_channels, grid, grid, generator=generator)
    points = torch.rand(2, 2, 3, 2, generator=generator) * config.prompt_encoder_config.image_size
    labels = torch.tensor([1, 0, 2]).expand(2, 2, 3).clone()
    return pixel_values, (image_embeddings, points, labels)


def _export_graphs(model: EfficientSamModel, staging: Path, opset_version: int) -> None:
    exported = _export_copy(model)
    pixel_values, decoder_inputs = _example_inputs(exported)
    prompt_axes = {0: "batch", 1: "queries", 2: "points"}
    with torch.no_grad():
        torch.onnx.export(
            EfficientSamOnnxEncoder(exported).eval(),
            (pixel_values,),
            str(staging / ENCODER_FILE),
            dynamo=False,
            input_names=["pixel_values"],
            output_names=["image_embeddings"],
            dynamic_axes={"pixel_values": {0: "batch"}, "image_embeddings": {0: "batch"}},
            opset_version=opset_version,
        )
        torch.onnx.export(
            EfficientSamOnnxPromptDecoder(exported).eval(),
            decoder_inputs,
            str(staging / DECODER_FILE),
            dynamo=False,
            input_names=["image_embeddings", "input_points", "input_labels"],
            output_names=["iou_scores", "pred_masks"],
            dynamic_axes={
                "image_embeddings": {0: "batch"},
                "input_points": prompt_axes,
                "input_labels": prompt_axes,
                "iou_scores": {0: "batch", 1: "queries"},
                "pred_masks": {0: "batch", 1: "queries"},
            },
            opset_version=opset_version,
        )
    config = exported.config
    channels, grid = config.vision_config.output_channels, config.vision_config.grid_size
    masks = exported.mask_decoder.num_multimask_outputs
    mask_size = grid * 2 ** len(config.mask_decoder_config.upscaling_dims)  # each upscaling doubles
    _declare_output_shapes(staging / ENCODER_FILE, {"image_embeddings": ["batch", channels, grid, grid]})
    _declare_output_shapes(
        staging / DECODER_FILE,
        {"iou_scores": ["batch", "queries", masks], "pred_masks": ["batch", "queries", masks, mask_size, mask_size]},
    )


def _declare_output_shapes(path: Path, shapes: dict[str, list]) -> None:
    """Write the known output shapes (ints, or axis names for the dynamic axes) into the graph: the exporter leaves
    some static dims symbolic ("Addimage_embeddings_dim_2"), which tells a C++/JS caller nothing."""
    onnx, _ = require_onnx()
    graph_model = onnx.load(str(path))
    for output in graph_model.graph.output:
        dims = output.type.tensor_type.shape.dim
        for dim, value in zip(dims, shapes[output.name]):
            if isinstance(value, str):
                dim.dim_param = value
            else:
                dim.dim_value = value
    onnx.save(graph_model, str(path))


def _session(path: Path, num_threads: int | None = None):
    _, onnxruntime = require_onnx()
    options = onnxruntime.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _random_prompts(shape, image_size: int, generator: torch.Generator):
    """Points anywhere in the frame with every label kind, padding points at negative coordinates."""
    batch, queries, num_points = shape
    points = torch.rand(batch, queries, num_points, 2, generator=generator) * image_size
    labels = torch.randint(-1, 4, (batch, queries, num_points), generator=generator)
    labels[..., 0] = 1  # at least one real point per query
    points[labels == -1] = -torch.rand(int((labels == -1).sum()), 2, generator=generator) * 10 - 0.01
    return points, labels


def verify_onnx(
    model: EfficientSamModel, output_dir: str | os.PathLike, atol: float = DEFAULT_ATOL, seed: int = 0
) -> tuple[dict[str, float], dict[str, float]]:
    """Run both graphs in onnxruntime (CPU) and `model` in PyTorch on random images and prompts.

    Returns (max abs error, max abs PyTorch value) per output; raises `OnnxVerificationError` above `atol`.
    The decoder gets the PyTorch image embeddings, so its error is its own.
    """
    output_dir = Path(output_dir)
    if model.dtype != torch.float32:
        model = copy.deepcopy(model).float()
    model.eval()
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    size = config.vision_config.image_size
    errors, scales = {}, {}

    def record(name, expected: torch.Tensor, got):
        error = float((expected - torch.from_numpy(got)).abs().max())
        errors[name] = max(errors.get(name, 0.0), error)
        scales[name] = max(scales.get(name, 0.0), float(expected.abs().max()))

    pixel_values = torch.randn(1, config.vision_config.num_channels, size, size, generator=generator)
    with torch.no_grad():
        image_embeddings = model.get_image_embeddings(pixel_values)
    (onnx_embeddings,) = _session(output_dir / ENCODER_FILE).run(None, {"pixel_values": pixel_values.numpy()})
    record("image_embeddings", image_embeddings, onnx_embeddings)

    decoder = _session(output_dir / DECODER_FILE)
    for shape in VERIFY_PROMPT_SHAPES:
        embeddings = image_embeddings.expand(shape[0], -1, -1, -1).contiguous()
        if shape[0] > 1:  # a second, different image
            embeddings[1:] = embeddings[1:].flip(-1)
        points, labels = _random_prompts(shape, config.prompt_encoder_config.image_size, generator)
        with torch.no_grad():
            expected = model(image_embeddings=embeddings, input_points=points, input_labels=labels)
        iou_scores, pred_masks = decoder.run(
            None,
            {"image_embeddings": embeddings.numpy(), "input_points": points.numpy(), "input_labels": labels.numpy()},
        )
        record("iou_scores", expected.iou_scores, iou_scores)
        record("pred_masks", expected.pred_masks, pred_masks)

    worst = max(errors.values())
    if worst > atol:
        detail = ", ".join(f"{name} {value:.3g}" for name, value in errors.items())
        raise OnnxVerificationError(
            f"onnxruntime differs from PyTorch by {worst:.3g} > atol {atol:g} (max abs error: {detail})."
        )
    return errors, scales


def export_onnx(
    model_or_path,
    output_dir: str | os.PathLike,
    opset_version: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
) -> OnnxExportResult:
    """Export `encoder.onnx` and `prompt_decoder.onnx` into `output_dir`, check them with `onnx.checker` and
    onnxruntime, then move them into place (nothing is written there if a check fails)."""
    onnx, _ = require_onnx()
    if not isinstance(opset_version, int) or opset_version < 17:
        raise ValueError(f"opset_version must be an integer >= 17, got {opset_version!r}.")
    if not isinstance(atol, (int, float)) or not atol > 0:
        raise ValueError(f"atol must be a positive number, got {atol!r}.")
    model = load_model(model_or_path)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".onnx-export.", dir=output_dir))
    try:
        with tqdm(total=3, desc="export-onnx", unit="step") as progress:
            progress.set_postfix_str("torch.onnx.export")
            _export_graphs(model, staging, opset_version)
            progress.update()
            progress.set_postfix_str("onnx.checker")
            for name in (ENCODER_FILE, DECODER_FILE):
                onnx.checker.check_model(str(staging / name), full_check=True)
            progress.update()
            progress.set_postfix_str("onnxruntime vs PyTorch")
            errors, scales = verify_onnx(model, staging, atol=atol, seed=seed)
            progress.update()
        result = OnnxExportResult(
            output_dir=str(output_dir),
            encoder_path=str(output_dir / ENCODER_FILE),
            decoder_path=str(output_dir / DECODER_FILE),
            opset_version=opset_version,
            atol=atol,
            max_abs_error=errors,
            max_abs_value=scales,
        )
        (staging / REPORT_FILE).write_text(json.dumps(asdict(result), indent=2) + "\n")
        for name in (ENCODER_FILE, DECODER_FILE, REPORT_FILE):
            os.replace(staging / name, output_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", required=True, help="save_pretrained folder, Hub id, or official .pt/.pt.zip file")
    parser.add_argument("--output", required=True, help="folder to write encoder.onnx and prompt_decoder.onnx into")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    parser.add_argument(
        "--atol", type=float, default=DEFAULT_ATOL, help="max abs error allowed vs PyTorch (default %(default)g)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random verification inputs")
    return parser


def run(args: argparse.Namespace) -> int:
    """0: exported and verified; 1: onnx/onnxruntime missing; 2: verification failed."""
    try:
        require_onnx()
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        result = export_onnx(args.model, args.output, opset_version=args.opset, atol=args.atol, seed=args.seed)
    except OnnxVerificationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {result.encoder_path} and {result.decoder_path} (opset {result.opset_version})")
    for name, error in result.max_abs_error.items():
        print(f"  {name:<16} max abs error {error:.3g} (max |value| {result.max_abs_value[name]:.3g})")
    print(f"verified with onnxruntime: max abs error {result.worst_error:.3g} <= atol {result.atol:g}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(
        argparse.ArgumentParser(prog="python -m efficientsam_hf.onnx_export", description=__doc__.splitlines()[0])
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
