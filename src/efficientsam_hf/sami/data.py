"""SAMI data: images from a folder or a `datasets` dataset, per-sample seeded augmentation and masking noise, and
the teacher-feature cache (computed once, shard by shard, resumable)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback

from .teacher import SamiTeacher
from .transforms import SamiTransform, whole_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def load_image_folder(path: str | os.PathLike) -> datasets.Dataset:
    """Every image file under `path` (recursively, sorted) as a dataset with an `image` column."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"train_dir must be an existing folder of images, got {str(path)!r}.")
    files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"train_dir {str(path)!r} contains no image files ({sorted(IMAGE_SUFFIXES)}).")
    return datasets.Dataset.from_dict({"image": files}).cast_column("image", datasets.Image())


def load_images(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_dir: str | None = None,
    split: str = "train",
    image_column: str = "image",
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """The training images: `train_dir` (a local folder) or `dataset_name` (any `datasets` image dataset)."""
    if (dataset_name is None) == (train_dir is None):
        raise ValueError("Give exactly one of dataset_name or train_dir.")
    if train_dir is not None:
        return load_image_folder(train_dir)
    images = datasets.load_dataset(dataset_name, dataset_config_name, split=split, cache_dir=cache_dir)
    if image_column not in images.column_names:
        raise ValueError(
            f"image_column_name {image_column!r} is not a column of {dataset_name}: {images.column_names}."
        )
    return images


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch, index): augmentation survives resumption and process count."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class SamiPretrainingDataset(torch.utils.data.Dataset):
    """Images -> `pixel_values`, `crop_boxes`, `flipped`, `noise` (+ `teacher_features` from the cache)."""

    def __init__(
        self,
        images: datasets.Dataset,
        transform: SamiTransform,
        num_tokens: int,
        image_column: str = "image",
        seed: int = 0,
        teacher_features: datasets.Dataset | None = None,
    ):
        if teacher_features is not None and len(teacher_features) != len(images):
            raise ValueError(
                f"teacher_features has {len(teacher_features)} rows but there are {len(images)} images; rebuild the cache."
            )
        self.images = images
        self.transform = transform
        self.num_tokens = num_tokens
        self.image_column = image_column
        self.seed = seed
        self.teacher_features = None if teacher_features is None else teacher_features.with_format("numpy")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = sample_generator(self.seed, self.epoch, index)
        sample = self.transform(self.images[index][self.image_column], generator)
        sample["noise"] = torch.rand(self.num_tokens, generator=generator)
        if self.teacher_features is not None:
            sample["teacher_features"] = torch.from_numpy(self.teacher_features[index]["teacher_features"]).float()
        return sample


def collate_sami(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}


class SetEpochCallback(TrainerCallback):
    """Tell the dataset which epoch starts (the Trainer only tells the sampler), before its iterator is built."""

    def __init__(self, dataset: SamiPretrainingDataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor((state.epoch or 0.0) + 1e-6))


def _write_json_atomically(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def precompute_teacher_features(
    images: datasets.Dataset,
    teacher: SamiTeacher,
    cache_dir: str | os.PathLike,
    image_column: str = "image",
    source: str = "",
    batch_size: int = 8,
    shard_size: int = 256,
    grid_size: int | None = None,
) -> datasets.Dataset:
    """Run the teacher once on every whole image (stretched to `teacher.image_size`) and keep its feature maps,
    float16 `(C, H, W)` (average-pooled to `grid_size` if given), in a `datasets` cache under `cache_dir`.

    Shards of `shard_size` images are written to a temporary folder and renamed when complete, so an interrupted
    run resumes at the first missing shard. `meta.json` records what the cache holds; a mismatch raises.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}.")
    name = getattr(getattr(teacher.model, "config", None), "_name_or_path", "") or type(teacher.model).__name__
    meta = {
        "teacher": name,
        "teacher_image_size": teacher.image_size,
        "teacher_hidden_size": teacher.hidden_size,
        "grid_size": grid_size,
        "num_images": len(images),
        "source": source,
        "shard_size": shard_size,
    }
    meta_path = cache / "meta.json"
    if meta_path.exists():
        found = json.loads(meta_path.read_text())
        if found != meta:
            raise ValueError(
                f"teacher_features_cache_dir {str(cache)!r} holds {found}, not {meta}; use another folder."
            )
    else:
        _write_json_atomically(meta_path, meta)

    num_shards = math.ceil(len(images) / shard_size)
    shard_dirs = [cache / f"shard-{i:05d}" for i in range(num_shards)]
    done = sum(d.exists() for d in shard_dirs)
    progress = tqdm(
        total=len(images), initial=min(done * shard_size, len(images)), desc="teacher features", unit="img"
    )
    for shard_index, shard_dir in enumerate(shard_dirs):
        if shard_dir.exists():
            continue
        start, stop = shard_index * shard_size, min((shard_index + 1) * shard_size, len(images))
        chunks = []
        for batch_start in range(start, stop, batch_size):
            rows = images[batch_start : min(batch_start + batch_size, stop)][image_column]
            pixel_values = torch.stack([whole_image(image, teacher.image_size) for image in rows])
            features = teacher(pixel_values)
            if grid_size is not None and features.shape[-1] != grid_size:
                features = torch.nn.functional.adaptive_avg_pool2d(features, grid_size)
            chunks.append(features.to(torch.float16).cpu().numpy())
            progress.update(len(rows))
        array = np.concatenate(chunks)
        feature_type = datasets.Features({"teacher_features": datasets.Array3D(array.shape[1:], "float16")})
        shard = datasets.Dataset.from_dict({"teacher_features": list(array)}, features=feature_type)
        tmp = shard_dir.with_name(shard_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shard.save_to_disk(str(tmp))
        os.replace(tmp, shard_dir)
    progress.close()
    return datasets.concatenate_datasets([datasets.load_from_disk(str(d)) for d in shard_dirs]).with_format("numpy")


__all__ = [
    "SamiPretrainingDataset",
    "SetEpochCallback",
    "collate_sami",
    "load_image_folder",
    "load_images",
    "precompute_teacher_features",
    "sample_generator",
]
