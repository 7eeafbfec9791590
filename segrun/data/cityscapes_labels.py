"""The official Cityscapes label definitions (cityscapesScripts' labels.py): labelId, trainId
and name of every label. trainId 255 marks labels left out of training and evaluation."""
import numpy as np

IGNORE_INDEX = 255

# (name, labelId, trainId)
LABELS = (
    ("unlabeled", 0, 255),
    ("ego vehicle", 1, 255),
    ("rectification border", 2, 255),
    ("out of roi", 3, 255),
    ("static", 4, 255),
    ("dynamic", 5, 255),
    ("ground", 6, 255),
    ("road", 7, 0),
    ("sidewalk", 8, 1),
    ("parking", 9, 255),
    ("rail track", 10, 255),
    ("building", 11, 2),
    ("wall", 12, 3),
    ("fence", 13, 4),
    ("guard rail", 14, 255),
    ("bridge", 15, 255),
    ("tunnel", 16, 255),
    ("pole", 17, 5),
    ("polegroup", 18, 255),
    ("traffic light", 19, 6),
    ("traffic sign", 20, 7),
    ("vegetation", 21, 8),
    ("terrain", 22, 9),
    ("sky", 23, 10),
    ("person", 24, 11),
    ("rider", 25, 12),
    ("car", 26, 13),
    ("truck", 27, 14),
    ("bus", 28, 15),
    ("caravan", 29, 255),
    ("trailer", 30, 255),
    ("train", 31, 16),
    ("motorcycle", 32, 17),
    ("bicycle", 33, 18),
    # "license plate" has labelId -1 and never appears in the label PNGs.
)

LABEL_ID = {name: label_id for name, label_id, _ in LABELS}

TRAIN_CLASS_NAMES = tuple(name for name, _, train_id in sorted(LABELS, key=lambda label: label[2]) if train_id != IGNORE_INDEX)


# Official colours of the 19 training classes, in trainId order (RGB).
PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)


def _train_id_lookup() -> np.ndarray:
    lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for _, label_id, train_id in LABELS:
        lookup[label_id] = train_id
    return lookup


# lookup[labelId] = trainId for every uint8 value; ids outside the table map to ignore.
LABEL_ID_TO_TRAIN_ID = _train_id_lookup()
