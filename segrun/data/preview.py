"""`segrun data show`: a grid of samples as the model receives them, each image beside its
colour-coded label."""
from pathlib import Path

import numpy as np

from segrun.data import DATASETS, resolve_root
from segrun.data.image_io import write_image
from segrun.data.transforms import build_pipeline
from segrun.spec import DataSpec, Spec


def colour_labels(label: np.ndarray, palette) -> np.ndarray:
    """uint8 RGB [H, W, 3]; ignored and unknown ids are black."""
    lookup = np.zeros((256, 3), np.uint8)
    lookup[: len(palette)] = palette
    return lookup[label]


def viewable_dataset(data: DataSpec, split: str):
    """The dataset of `split` after the data spec's pipeline for that split, without Normalize (so
    the colours stay viewable); sample i is sample i of the training or validation set."""
    steps = data.train_pipeline if split == "train" else data.val_pipeline
    return DATASETS[data.dataset](resolve_root(data.root), split, build_pipeline([s for s in steps if s.name != "Normalize"]))


def viewable_image(image) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a viewable dataset's image tensor [3, H, W]."""
    return image.permute(1, 2, 0).clamp(0, 255).byte().numpy()


def sample_grid(spec: Spec, split: str, count: int) -> np.ndarray:
    """`count` samples of `split` after the spec's pipeline for that split, without Normalize: one
    row per sample, image | labels, rows padded to a common size."""
    dataset = viewable_dataset(spec.data, split)
    rows = []
    for index in range(min(count, len(dataset))):
        image, label = dataset[index]
        rows.append(np.concatenate([viewable_image(image), colour_labels(label.numpy().astype(np.uint8), dataset.palette)],
                                   axis=1))
    height, width = max(r.shape[0] for r in rows), max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, height - r.shape[0] + 4), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(padded, axis=0)


def write_sample_grid(spec: Spec, split: str, count: int, out: Path) -> Path:
    write_image(out, sample_grid(spec, split, count))
    return out
