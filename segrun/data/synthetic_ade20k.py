"""Synthetic ADE20K in the benchmark's layout: images/{training,validation}/ADE_{train,val}_*.jpg and
annotations/ with stored values 0 to 150 (0 where a scene holds an object of no benchmark class), so
that preparation, the dataset and training run anywhere."""
from pathlib import Path

import numpy as np

from segrun.data.ade20k_labels import STORED_VALUES, UNLABELLED
from segrun.data.downloads import ADE20K
from segrun.data.image_io import write_image
from segrun.data.synthetic_pascal_context import render_scene
from segrun.terminal import bar

STUFF_VALUES = (1, 3, 4, 7, 10, 14, 22)  # wall, sky, floor, road, grass, earth, water
SPLITS = {"train": ("training", "ADE_train", 1), "val": ("validation", "ADE_val", 2)}  # folder, file prefix, seed key


def synthesize(root: Path, train_images: int = 80, val_images: int = 20, height: int = 128, width: int = 160,
               seed: int = 0, progress: bool = True, layout: str = "flat") -> int:
    """Write the scenes under root in the named layout (segrun.data.downloads.ADE20K); files already
    there are kept; each scene depends only on (seed, split, index). Returns how many were written."""
    root, folders = Path(root), ADE20K[layout]
    written = 0
    for split, count in (("train", train_images), ("val", val_images)):
        folder, prefix, key = SPLITS[split]
        image_dir, label_dir = folders.folder(root, "images") / folder, folders.folder(root, "annotations") / folder
        missing = [index for index in range(count)
                   if not ((image_dir / f"{prefix}_{index + 1:08d}.jpg").exists()
                           and (label_dir / f"{prefix}_{index + 1:08d}.png").exists())]
        for index in bar(missing, f"synthesising {root} {split}", "image", progress):
            scene_seed = int(np.random.SeedSequence([seed, key, index]).generate_state(1)[0])
            image, label = render_scene(height, width, scene_seed, STUFF_VALUES, STORED_VALUES, (UNLABELLED,))
            write_image(label_dir / f"{prefix}_{index + 1:08d}.png", label.astype(np.uint8))
            write_image(image_dir / f"{prefix}_{index + 1:08d}.jpg", image)
            written += 1
    return written
