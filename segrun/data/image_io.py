"""Reading and atomically writing the image and label files of the dataset layouts."""
import os
from pathlib import Path

import cv2
import numpy as np


def read_rgb(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] in RGB order."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: Path) -> np.ndarray:
    """uint8 [H, W] label map, values as stored."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2:
        raise OSError(f"{path}: not a single-channel label image")
    return label


def write_image(path: Path, array: np.ndarray) -> None:
    """Write an image (RGB [H, W, 3] or labels [H, W]; the format follows the suffix) under a
    temporary name, then rename, so an interrupted write never leaves a truncated file at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial{path.suffix}")
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(temporary), array):
        raise OSError(f"{path}: could not write the image")
    os.replace(temporary, path)
