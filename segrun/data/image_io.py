"""Reading and atomically writing the image and label files of the dataset layouts."""
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from segrun.atomic_write import write_atomically


def read_rgb(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] in RGB order, pixels as stored: an EXIF orientation is not applied, so the
    image lines up with its label file (which has none) and with image_size."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise OSError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# PIL modes of label files: values as stored (8- or 16-bit), palette indices, 1-bit masks as 0 and 1
_VALUE_MODES = ("L", "I;16", "I;16B", "I;16L")
_DECODED_BY_PIL = ("P", "1")


def read_label(path: Path) -> np.ndarray:
    """uint8 or uint16 [H, W] label map, values as stored: a grey-level image's values, a palette
    image's indices (not its colours), a 1-bit mask's 0 and 1. An OSError names a file that is no
    single-channel label image."""
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in _DECODED_BY_PIL:
                return np.array(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError):
        raise OSError(f"{path}: not a readable image") from None
    if mode not in _VALUE_MODES:
        raise OSError(f"{path}: a {mode} image, not a label image; labels are single-channel 8- or 16-bit class "
                      "values (or a palette image's indices), one per pixel")
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2:
        raise OSError(f"{path}: not a readable image")
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
