"""Per-class loss weights from the pixel frequencies of a dataset's training labels."""
import numpy as np
from tqdm import tqdm

from segrun.data.image_io import read_label

METHODS = ("enet", "inverse", "median")


def label_statistics(label_paths, num_classes: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(pixels of each class, valid pixels of the images in which each class appears)."""
    class_pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    for path in tqdm(label_paths, desc="counting label pixels", disable=not progress, unit="label"):
        counts = np.bincount(read_label(path).ravel(), minlength=256)[:num_classes]
        class_pixels += counts
        image_pixels[counts > 0] += counts.sum()
    return class_pixels, image_pixels


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
