"""PASCAL Context: preparation from the downloads, and the 60- and 59-class datasets.

Downloads, unpacked under ROOT in either layout of segrun.data.downloads:
- VOCtrainval_03-May-2010.tar: ROOT/VOCdevkit/VOC2010/ (flat) or
  ROOT/VOCtrainval_03-May-2010/VOCdevkit/VOC2010/ (study), with JPEGImages/<id>.jpg and
  ImageSets/Main/{train,val}.txt;
- trainval.tar.gz from the PASCAL-Context page: ROOT/trainval/<id>.mat (flat) or
  ROOT/trainval/trainval/<id>.mat (study), `LabelMap`, ids of the 459-label space.
`segrun data prepare pascal-context ROOT` writes Images/{train,val}/<id>.jpg and
Annotations/{train,val}/<id>.png with the 60 classes (every other id becomes background 0) into
ROOT (flat) or ROOT/VOC2010_Context (study, where the study's own preparation writes the same files).
The 59-class variant is made at load time: background becomes 255, the rest shift down by one.
"""
from pathlib import Path

import numpy as np
import scipy.io

from segrun.atomic_write import write_atomically
from segrun.data import synthetic_pascal_context
from segrun.data.downloads import PASCAL_CONTEXT, find_layout
from segrun.data.image_io import write_image
from segrun.data.labelled_images import LabelledImages
from segrun.data.pascal_context_labels import (
    CLASS_NAMES_59,
    CLASS_NAMES_60,
    FULL_TO_60,
    context60_to_59,
    voc_palette,
)
from segrun.errors import DatasetError
from segrun.terminal import bar

DEVKIT_DOWNLOAD = "VOCtrainval_03-May-2010.tar from the PASCAL VOC 2010 site"
CONTEXT_DOWNLOAD = "trainval.tar.gz from the PASCAL-Context site"
SPLITS = ("train", "val")


def _split_ids(devkit: Path, split: str) -> list[str]:
    split_file = devkit / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise DatasetError(f"{split_file}: no such file; it comes from {DEVKIT_DOWNLOAD}")
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"{split_file}: lists no images")
    return ids


def read_label_map(mat_file: Path) -> np.ndarray:
    try:
        label_map = scipy.io.loadmat(mat_file).get("LabelMap")
    except (OSError, ValueError, scipy.io.matlab.MatReadError) as error:
        raise DatasetError(f"{mat_file}: not a readable .mat file ({error})") from None
    if label_map is None or label_map.ndim != 2:
        raise DatasetError(f"{mat_file}: holds no 2-d LabelMap; is it from {CONTEXT_DOWNLOAD}?")
    return label_map


def prepare(root: Path, progress: bool = True) -> int:
    """Write the reduced layout for every image of the train and val split files; files already
    written are kept, each is written under a temporary name then renamed, and the downloads are
    only read. Returns how many images were written."""
    root = Path(root)
    layout = find_layout(root, PASCAL_CONTEXT)
    devkit, mats = layout.folder(root, "VOCtrainval_03-May-2010"), layout.folder(root, "trainval")
    for folder, download in ((devkit / "JPEGImages", DEVKIT_DOWNLOAD), (mats, CONTEXT_DOWNLOAD)):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such folder; it comes from {download}")
    def outputs(split: str, image_id: str) -> tuple[Path, Path]:
        return (layout.folder(root, "Images") / split / f"{image_id}.jpg",
                layout.folder(root, "Annotations") / split / f"{image_id}.png")

    jobs = [(split, image_id) for split in SPLITS for image_id in _split_ids(devkit, split)
            if not all(path.exists() for path in outputs(split, image_id))]
    for split, image_id in bar(jobs, f"preparing {root}", "image", progress):
        image_out, label_out = outputs(split, image_id)
        image_in, mat_in = devkit / "JPEGImages" / f"{image_id}.jpg", mats / f"{image_id}.mat"
        for needed, download in ((image_in, DEVKIT_DOWNLOAD), (mat_in, CONTEXT_DOWNLOAD)):
            if not needed.is_file():
                raise DatasetError(f"{needed}: missing ({split}.txt lists {image_id}); it comes from {download}")
        write_image(label_out, FULL_TO_60[read_label_map(mat_in)])
        write_atomically(image_out, image_in.read_bytes())
    return len(jobs)


class PascalContext60(LabelledImages):
    """60 classes, background (0) scored; padding added by the transform is 255 (ignored)."""

    num_classes = 60
    class_names = CLASS_NAMES_60
    palette = voc_palette(60)
    prepare = staticmethod(prepare)
    prepare_command = "segrun data prepare pascal-context"
    synthesize = staticmethod(synthetic_pascal_context.synthesize)

    def __init__(self, root, split: str, transform=None):
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.layout = find_layout(self.root, PASCAL_CONTEXT)
        image_dir = self.layout.folder(self.root, "Images") / split
        label_dir = self.layout.folder(self.root, "Annotations") / split
        if not label_dir.is_dir():
            raise DatasetError(f"{label_dir}: no such folder; run: {self.prepare_command} {self.root}")
        self.labels = sorted(label_dir.glob("*.png"))
        if not self.labels:
            raise DatasetError(f"{label_dir}: no .png annotations; run: {self.prepare_command} {self.root}")
        self.images = [image_dir / f"{label.stem}.jpg" for label in self.labels]
        missing = [image for image in self.images if not image.exists()]
        if missing:
            raise DatasetError(f"{missing[0]}: missing ({len(missing)} images); run: {self.prepare_command} {self.root}")


class PascalContext59(PascalContext60):
    """59 classes: background is ignored (255) and the other classes shift down by one."""

    num_classes = 59
    class_names = CLASS_NAMES_59
    palette = voc_palette(60)[1:]

    def read_label(self, index: int) -> np.ndarray:
        return context60_to_59(super().read_label(index))
