"""Synthetic PASCAL Context downloads: VOC2010 devkit JPEGs and split files, and trainval/*.mat
annotations with `LabelMap`s in the 459-label space, so preparation and loaders run anywhere.

Each scene has a textured background stuff class (sky, grass, wall, ...) and objects (ellipses,
boxes, triangles) of other classes, each class with its own colour and texture; about one object
in four carries an id outside the 60 classes, which preparation turns into background.
"""
import io
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from segrun.atomic_write import write_atomically
from segrun.data.downloads import PASCAL_CONTEXT
from segrun.data.image_io import write_image
from segrun.data.pascal_context_labels import CLASS_IDS
from segrun.terminal import bar

STUFF_IDS = (366, 189, 440, 187, 445, 260, 158)  # sky, grass, wall, ground, water, mountain, floor
OTHER_IDS = (1, 3, 50, 120, 300, 400, 459)  # ids outside the 60 classes: background after preparation
SPLIT_YEARS = {"train": 2008, "val": 2009}


def _colour(full_id: int) -> np.ndarray:
    return np.random.default_rng(full_id).uniform(30, 225, 3)


def render_scene(height: int, width: int, seed: int, stuff_ids=STUFF_IDS, object_ids=CLASS_IDS[1:],
                 other_ids=OTHER_IDS) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB [H, W, 3], uint16 label map [H, W]): a background of one of `stuff_ids`, two to
    five objects of `object_ids` and up to one of `other_ids` (by default ids of the 459-label space)."""
    rng = np.random.default_rng(seed)
    stuff = int(rng.choice(stuff_ids))
    label = np.full((height, width), stuff, np.uint16)
    image = np.tile(_colour(stuff), (height, width, 1)).astype(np.float32)
    objects = [int(i) for i in rng.choice(object_ids, size=rng.integers(2, 6))]
    objects += [int(rng.choice(other_ids)) for _ in range(rng.integers(0, 2))]
    for full_id in objects:
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.08, 0.3) * min(height, width)
        mask = np.zeros((height, width), np.uint8)
        shape = full_id % 3
        if shape == 0:
            cv2.ellipse(mask, (int(cx), int(cy)), (int(size), int(size * rng.uniform(0.5, 1.0))), 0, 0, 360, 1, -1)
        elif shape == 1:
            cv2.rectangle(mask, (int(cx - size), int(cy - size * 0.7)), (int(cx + size), int(cy + size * 0.7)), 1, -1)
        else:
            points = np.array([(cx, cy - size), (cx - size, cy + size), (cx + size, cy + size)], np.int32)
            cv2.fillPoly(mask, [points], 1)
        inside = mask > 0
        label[inside] = full_id
        stripes = 1 + 0.15 * np.sin(np.arange(width) * (0.3 + full_id % 5 * 0.2))[None, :]
        image[inside] = (_colour(full_id) * stripes[..., None].repeat(height, 0))[inside]
    image = image * rng.uniform(0.8, 1.2) + rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def synthesize(root: Path, train_images: int = 80, val_images: int = 20, height: int = 128, width: int = 160,
               seed: int = 0, progress: bool = True, layout: str = "flat") -> int:
    """Write the downloads under root in the named layout of segrun.data.downloads: the devkit's
    VOC2010/{JPEGImages,ImageSets/Main} and the trainval/*.mat label maps. Files already there are
    kept; each scene depends only on (seed, split, index)."""
    root, folders = Path(root), PASCAL_CONTEXT[layout]
    devkit, mats = folders.folder(root, "VOCtrainval_03-May-2010"), folders.folder(root, "trainval")
    written = 0
    for split, count in (("train", train_images), ("val", val_images)):
        ids = [f"{SPLIT_YEARS[split]}_{index:06d}" for index in range(count)]
        missing = [(index, image_id) for index, image_id in enumerate(ids)
                   if not ((devkit / "JPEGImages" / f"{image_id}.jpg").exists() and (mats / f"{image_id}.mat").exists())]
        for index, image_id in bar(missing, f"synthesising {root} {split}", "image", progress):
            image_path, mat_path = devkit / "JPEGImages" / f"{image_id}.jpg", mats / f"{image_id}.mat"
            scene_seed = int(np.random.SeedSequence([seed, SPLIT_YEARS[split], index]).generate_state(1)[0])
            image, label_map = render_scene(height, width, scene_seed)
            mat = io.BytesIO()
            scipy.io.savemat(mat, {"LabelMap": label_map})
            write_atomically(mat_path, mat.getvalue())
            write_image(image_path, image)
            written += 1
        split_file = devkit / "ImageSets" / "Main" / f"{split}.txt"
        write_atomically(split_file, "".join(f"{image_id}\n" for image_id in ids).encode())
    return written
