"""Label statistics of a dataset split, and per-class loss weights from its pixel frequencies."""
from collections import Counter
from typing import NamedTuple

import numpy as np

from segrun.terminal import bar

METHODS = ("enet", "inverse", "median")


class LabelStatistics(NamedTuple):
    class_pixels: np.ndarray  # [C] pixels of each class
    image_pixels: np.ndarray  # [C] labelled pixels of the images in which each class appears
    sizes: Counter  # (height, width) -> number of images


def label_statistics(dataset, progress: bool = True) -> LabelStatistics:
    """Count the training ids of every label of `dataset` (its checked labels, so mapped labels
    such as PASCAL Context 59's are counted as training sees them)."""
    num_classes = dataset.num_classes
    class_pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    sizes = Counter()
    for index in bar(range(len(dataset)), f"reading {dataset.split} labels", "label", progress):
        label = dataset.label(index)
        sizes[label.shape] += 1
        counts = np.bincount(label.ravel(), minlength=256)[:num_classes]
        class_pixels += counts
        image_pixels[counts > 0] += counts.sum()
    return LabelStatistics(class_pixels, image_pixels, sizes)


def class_weights(class_pixels: np.ndarray, image_pixels: np.ndarray, method: str) -> np.ndarray:
    """enet: 1 / ln(1.02 + p) with p the class's share of all labelled pixels (Paszke et al.);
    inverse: 1 / p; median: median frequency balancing, median(f) / f with f the class's share of
    the pixels of the images it appears in (Eigen and Fergus). Rescaled to mean 1 over the classes
    present; a class that never appears gets 0."""
    present = class_pixels > 0
    share = class_pixels / max(class_pixels.sum(), 1)
    weights = np.zeros(len(class_pixels))
    if method == "enet":
        weights[present] = 1.0 / np.log(1.02 + share[present])
    elif method == "inverse":
        weights[present] = 1.0 / share[present]
    elif method == "median":
        frequency = class_pixels[present] / image_pixels[present]
        weights[present] = np.median(frequency) / frequency
    else:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if present.any():
        weights[present] /= weights[present].mean()
    return weights


def as_toml(weights: np.ndarray, class_names) -> str:
    values = ", ".join(f"{w:.4f}" for w in weights)
    absent = [name for name, w in zip(class_names, weights) if w == 0]
    note = f"\n# absent from the training labels, weight 0: {', '.join(absent)}" if absent else ""
    return f"class_weights = [{values}]{note}"
