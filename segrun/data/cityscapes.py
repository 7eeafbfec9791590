"""Cityscapes as published: leftImg8bit/<split>/<city>/*_leftImg8bit.png images with
gtFine/<split>/<city>/*_gtFine_labelIds.png labels, and the preparation step that writes the
*_gtFine_labelTrainIds.png files training reads."""
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from segrun.data import synthetic_cityscapes
from segrun.data.cityscapes_labels import IGNORE_INDEX, LABEL_ID_TO_TRAIN_ID, TRAIN_CLASS_NAMES
from segrun.data.image_io import read_label, read_rgb, write_png
from segrun.errors import DatasetError

IMAGE_SUFFIX = "_leftImg8bit.png"
DOWNLOAD = "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from cityscapes-dataset.com"


def label_path(root: Path, split: str, image: Path, kind: str = "labelTrainIds") -> Path:
    stem = image.name[: -len(IMAGE_SUFFIX)]
    return root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_{kind}.png"


def list_images(root: Path, split: str) -> list[Path]:
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: no such folder; it comes from {DOWNLOAD} "
                           f"(or make synthetic data: segrun data synth cityscapes {root})")
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise DatasetError(f"{image_dir}: no <city>/*{IMAGE_SUFFIX} images in it")
    return images


def prepare(root: Path, progress: bool = True) -> int:
    """Write *_gtFine_labelTrainIds.png beside every *_gtFine_labelIds.png that lacks one, using
    the official labelId -> trainId table. Returns how many were written; existing files are
    kept, and each file is written under a temporary name then renamed, so the step can be
    interrupted and run again."""
    root = Path(root)
    gt_dir = root / "gtFine"
    if not gt_dir.is_dir():
        raise DatasetError(f"{gt_dir}: no such folder; it comes from {DOWNLOAD}")
    sources = sorted(gt_dir.glob("*/*/*_gtFine_labelIds.png"))
    if not sources:
        raise DatasetError(f"{gt_dir}: no <split>/<city>/*_gtFine_labelIds.png files in it")
    written = 0
    for source in tqdm(sources, desc=f"preparing {root}", disable=not progress, unit="label"):
        target = source.with_name(source.name.replace("_labelIds.png", "_labelTrainIds.png"))
        if target.exists():
            continue
        write_png(target, LABEL_ID_TO_TRAIN_ID[read_label(source)])
        written += 1
    return written


class Cityscapes(Dataset):
    """Fine annotations, 19 training classes, ignore 255. Items: (image float [3, H, W] after the
    transform, labels int64 [H, W])."""

    num_classes = len(TRAIN_CLASS_NAMES)
    class_names = TRAIN_CLASS_NAMES
    ignore_index = IGNORE_INDEX
    synthesize = staticmethod(synthetic_cityscapes.synthesize)
    prepare = staticmethod(prepare)

    def __init__(self, root, split: str, transform=None):
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.images = list_images(self.root, split)
        self.labels = [label_path(self.root, split, image) for image in self.images]
        missing = [label for label in self.labels if not label.exists()]
        if missing:
            raise DatasetError(f"{missing[0]}: missing ({len(missing)} of {len(self.labels)} {split} labels); "
                               f"run: segrun data prepare cityscapes {self.root}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = read_rgb(self.images[index]), read_label(self.labels[index])
        if self.transform is not None:
            transformed = self.transform(image=image, mask=label)
            image, label = transformed["image"], transformed["mask"]
        image = torch.as_tensor(np.ascontiguousarray(image))
        if image.dim() == 3 and image.shape[-1] == 3:  # still HWC: no ToTensorV2 in the transform
            image = image.permute(2, 0, 1)
        return image.float(), torch.as_tensor(np.ascontiguousarray(label)).long()
