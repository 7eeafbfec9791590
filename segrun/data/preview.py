"""`segrun data show`: a grid of samples as the model receives them, each image beside its
colour-coded label."""
from pathlib import Path

import numpy as np

from segrun.data import dataset_of, resolve_root
from segrun.data.image_io import write_image
from segrun.spec import DataSpec, Spec


def colour_labels(label: np.ndarray, palette) -> np.ndarray:
    """uint8 RGB [H, W, 3]; ignored and unknown ids are black."""
    lookup = np.zeros((256, 3), np.uint8)
    lookup[: len(palette)] = palette
    return lookup[label]


def viewable_dataset(data: DataSpec, split: str):
    """The dataset of `split` after the data spec's pipeline for that split, without Normalize (so
    the colours stay viewable); sample i is sample i of the training or validation set."""
    from segrun.data.transforms import build_pipeline  # albumentations: imported only where a dataset is viewed

    steps = data.train_pipeline if split == "train" else data.val_pipeline
    return dataset_of(data)(resolve_root(data.root), split, build_pipeline([s for s in steps if s.name != "Normalize"]))


def viewable_image(image) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a viewable dataset's image tensor [3, H, W]."""
    return image.permute(1, 2, 0).clamp(0, 255).byte().numpy()


LEGEND_ROW = 16  # pixels per class in the legend


def legend(class_ids, class_names, palette, height: int) -> np.ndarray:
    """uint8 RGB [max(height, LEGEND_ROW), W, 3], white: a colour swatch and the name of each class
    in `class_ids`, in as many columns as `height` needs."""
    import cv2

    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    per_column = max(1, height // LEGEND_ROW)
    column_width = 28 + max((cv2.getTextSize(class_names[c], font, scale, 1)[0][0] for c in class_ids), default=0)
    panel = np.full((max(height, LEGEND_ROW), max(1, -(-len(class_ids) // per_column)) * column_width, 3), 255, np.uint8)
    for n, class_id in enumerate(class_ids):
        top, left = (n % per_column) * LEGEND_ROW, (n // per_column) * column_width
        panel[top + 2:top + 14, left + 4:left + 16] = palette[class_id]
        cv2.putText(panel, class_names[class_id], (left + 20, top + 12), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return panel


def sample_grid(spec: Spec, split: str, count: int) -> np.ndarray:
    """`count` samples of `split` after the spec's pipeline for that split, without Normalize: one
    row per sample, image | labels, rows padded to a common size; at the right, the legend of the
    classes in those labels."""
    dataset = viewable_dataset(spec.data, split)
    rows, present = [], set()
    for index in range(min(count, len(dataset))):
        image, label = dataset[index]
        label = label.numpy().astype(np.uint8)
        present |= {int(c) for c in np.unique(label) if c < len(dataset.class_names)}
        rows.append(np.concatenate([viewable_image(image), colour_labels(label, dataset.palette)], axis=1))
    height, width = max(r.shape[0] for r in rows), max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, height - r.shape[0] + 4), (0, width - r.shape[1]), (0, 0))) for r in rows]
    grid = np.concatenate(padded, axis=0)
    key = legend(sorted(present), dataset.class_names, dataset.palette, grid.shape[0])
    grid = np.pad(grid, ((0, key.shape[0] - grid.shape[0]), (0, 0), (0, 0)))
    return np.concatenate([grid, key], axis=1)


def write_sample_grid(spec: Spec, split: str, count: int, out: Path) -> Path:
    write_image(out, sample_grid(spec, split, count))
    return out
