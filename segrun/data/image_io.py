"""Reading and atomically writing the image and label files of the dataset layouts."""
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from segrun.atomic_write import write_atomically


def read_rgb(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] in RGB order."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: Path) -> np.ndarray:
    """uint8 [H, W] label map, values as stored."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise OSError(f"{path}: not a readable image")
    if label.ndim != 2:
        raise OSError(f"{path}: not a single-channel label image")
    return label


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file from its header, without decoding its pixels."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, UnidentifiedImageError):
        raise OSError(f"{path}: not a readable image") from None


def write_image(path: Path, array: np.ndarray) -> None:
    """Write an image (RGB [H, W, 3] or labels [H, W]; the format follows the suffix) atomically,
    so an interrupted write never leaves a truncated file at `path`."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    encoded, data = cv2.imencode(path.suffix, array)
    if not encoded:
        raise OSError(f"{path}: could not write the image")
    write_atomically(path, data.tobytes())
