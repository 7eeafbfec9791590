"""PASCAL Context (VOC2010) reduced to its standard 60 classes (tests/reference/pascal_context.md)."""
import numpy as np

# Position i is class i; the value is its id in the 459-label space of the .mat annotations.
CLASS_IDS = (
    0, 2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115, 144,
    158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349, 354, 355,
    360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458,
)
CLASS_NAMES_60 = (
    "background", "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain",
    "dog", "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light",
    "motorbike", "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep",
    "shelves", "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck",
    "tvmonitor", "wall", "water", "window", "wood",
)
CLASS_NAMES_59 = CLASS_NAMES_60[1:]


def _full_to_60() -> np.ndarray:
    lookup = np.zeros(65536, dtype=np.uint8)  # every id outside the 60 becomes background
    for index, full_id in enumerate(CLASS_IDS):
        lookup[full_id] = index
    return lookup


# lookup[id in the 459-label space] = class in 0..59
FULL_TO_60 = _full_to_60()


def context60_to_59(label: np.ndarray) -> np.ndarray:
    """Background (0) becomes ignore (255); every other class shifts down by one."""
    return np.where(label == 0, 255, label.astype(np.int16) - 1).astype(np.uint8)


def voc_palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map: bits of the class index spread over R, G and B."""
    colours = []
    for index in range(count):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        colours.append((red, green, blue))
    return tuple(colours)
