"""Cityscapes as published: leftImg8bit/<split>/<city>/*_leftImg8bit.png images with
gtFine/<split>/<city>/*_gtFine_labelIds.png (fine) or gtCoarse/<split>/<city>/*_gtCoarse_labelIds.png
(coarse) labels, and the preparation step that writes the *_labelTrainIds.png files training reads.

Three datasets share the layout: `cityscapes` (fine train), `cityscapes_coarse` (coarse train_extra
and coarse train) and `cityscapes_fine_coarse` (fine train plus coarse train_extra), all validated
on the fine val split (coarse annotations have none).
"""
from pathlib import Path

from tqdm import tqdm

from segrun.data import synthetic_cityscapes
from segrun.data.cityscapes_labels import LABEL_ID_TO_TRAIN_ID, PALETTE, TRAIN_CLASS_NAMES
from segrun.data.image_io import read_label, write_image
from segrun.data.labelled_images import LabelledImages
from segrun.errors import DatasetError

IMAGE_SUFFIX = "_leftImg8bit.png"
DOWNLOADS = {
    "train": "leftImg8bit_trainvaltest.zip", "val": "leftImg8bit_trainvaltest.zip",
    "train_extra": "leftImg8bit_trainextra.zip", "gtFine": "gtFine_trainvaltest.zip", "gtCoarse": "gtCoarse.zip",
}


def label_path(root: Path, split: str, image: Path, annotation: str = "gtFine", kind: str = "labelTrainIds") -> Path:
    stem = image.name[: -len(IMAGE_SUFFIX)]
    return root / annotation / split / image.parent.name / f"{stem}_{annotation}_{kind}.png"


def list_images(root: Path, split: str) -> list[Path]:
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        synthetic = "cityscapes-coarse" if split == "train_extra" else "cityscapes"
        raise DatasetError(f"{image_dir}: no such folder; unpack {DOWNLOADS[split]} (cityscapes-dataset.com) into {root}, "
                           f"then run: segrun data prepare cityscapes {root} (or make synthetic data: segrun data synth "
                           f"{synthetic} {root})")
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise DatasetError(f"{image_dir}: no <city>/*{IMAGE_SUFFIX} images in it")
    return images


def prepare(root: Path, progress: bool = True) -> int:
    """Write *_labelTrainIds.png beside every *_gtFine_labelIds.png and *_gtCoarse_labelIds.png that
    lacks one, using the official labelId -> trainId table (void becomes 255). Returns how many
    were written; existing files are kept, and each file is written under a temporary name then
    renamed, so the step can be interrupted and run again. The downloads are only read."""
    root = Path(root)
    annotations = [root / name for name in ("gtFine", "gtCoarse") if (root / name).is_dir()]
    if not annotations:
        raise DatasetError(f"{root / 'gtFine'}: no such folder; it comes from {DOWNLOADS['gtFine']} on cityscapes-dataset.com")
    sources = sorted(source for folder in annotations for source in folder.glob(f"*/*/*_{folder.name}_labelIds.png"))
    if not sources:
        raise DatasetError(f"{annotations[0]}: no <split>/<city>/*_labelIds.png files in it")
    written = 0
    for source in tqdm(sources, desc=f"preparing {root}", disable=not progress, unit="label"):
        target = source.with_name(source.name.replace("_labelIds.png", "_labelTrainIds.png"))
        if target.exists():
            continue
        write_image(target, LABEL_ID_TO_TRAIN_ID[read_label(source)])
        written += 1
    return written


class CityscapesLayout(LabelledImages):
    """19 training classes, ignore 255. SOURCES maps a split to the (image split, annotation)
    pairs it reads."""

    num_classes = len(TRAIN_CLASS_NAMES)
    class_names = TRAIN_CLASS_NAMES
    palette = PALETTE
    prepare = staticmethod(prepare)
    prepare_command = "segrun data prepare cityscapes"
    SOURCES: dict[str, tuple[tuple[str, str], ...]] = {}
    mixes_coarse = False  # whether the train split holds both fine and coarse samples

    def indices_by_annotation(self) -> tuple[list[int], list[int]]:
        """(indices of fine samples, indices of coarse samples)."""
        fine = [i for i, annotation in enumerate(self.annotations) if annotation == "gtFine"]
        return fine, [i for i, annotation in enumerate(self.annotations) if annotation == "gtCoarse"]

    def __init__(self, root, split: str, transform=None):
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.images, self.labels, self.annotations = [], [], []
        for image_split, annotation in self.SOURCES[split]:
            images = list_images(self.root, image_split)
            labels = [label_path(self.root, image_split, image, annotation) for image in images]
            missing = [label for label in labels if not label.exists()]
            if missing:
                raise DatasetError(f"{missing[0]}: missing ({len(missing)} of {len(labels)} {image_split} {annotation} "
                                   f"labels); run: {self.prepare_command} {self.root}")
            self.images += images
            self.labels += labels
            self.annotations += [annotation] * len(images)


FINE_VAL = (("val", "gtFine"),)


class Cityscapes(CityscapesLayout):
    """Fine annotations: 2,975 train and 500 val images in the official release."""

    SOURCES = {"train": (("train", "gtFine"),), "val": FINE_VAL}
    synthesize = staticmethod(synthetic_cityscapes.synthesize)


class CityscapesCoarse(CityscapesLayout):
    """Coarse annotations: the 19,998 train_extra images and the 2,975 train images, fine val."""

    SOURCES = {"train": (("train_extra", "gtCoarse"), ("train", "gtCoarse")), "val": FINE_VAL}
    synthesize = staticmethod(synthetic_cityscapes.synthesize_with_coarse)


class CityscapesFineCoarse(CityscapesLayout):
    """Fine train plus coarse train_extra as one training set, fine val. With
    data.coarse_schedule = "linear_decay", the coarse share per epoch falls linearly to none."""

    mixes_coarse = True

    SOURCES = {"train": (("train", "gtFine"), ("train_extra", "gtCoarse")), "val": FINE_VAL}
    synthesize = staticmethod(synthetic_cityscapes.synthesize_with_coarse)
