"""Cityscapes as published: leftImg8bit/<split>/<city>/*_leftImg8bit.png images with
gtFine/<split>/<city>/*_gtFine_labelIds.png (fine) or gtCoarse/<split>/<city>/*_gtCoarse_labelIds.png
(coarse) labels, in either layout of segrun.data.downloads, and the preparation step that writes
the *_labelTrainIds.png files training reads.

Three datasets share the layout: `cityscapes` (fine train), `cityscapes_coarse` (coarse train_extra,
the study's coarse set) and `cityscapes_fine_coarse` (fine train plus coarse train_extra), all
validated on the fine val split (coarse annotations have none). The coarse labels of the fine train
images (gtCoarse/train) are not used, as in the study.
"""
from pathlib import Path

from segrun.data import synthetic_cityscapes
from segrun.data.cityscapes_labels import (
    LABEL_ID_TO_TRAIN_ID,
    PALETTE,
    TRAIN_CLASS_NAMES,
)
from segrun.data.downloads import (
    BROKEN_IN_DOWNLOAD,
    CITYSCAPES,
    Layout,
    cityscapes_archive,
    cityscapes_folder,
    find_layout,
)
from segrun.data.image_io import read_label, write_image
from segrun.data.labelled_images import LabelledImages
from segrun.errors import DatasetError
from segrun.terminal import bar

IMAGE_SUFFIX = "_leftImg8bit.png"

# (image split, annotation) sources the datasets read
FINE_TRAIN, FINE_VAL, COARSE_TRAIN_EXTRA = ("train", "gtFine"), ("val", "gtFine"), ("train_extra", "gtCoarse")
PREPARED = (FINE_TRAIN, FINE_VAL, COARSE_TRAIN_EXTRA)  # every source some dataset reads, so every one prepared


def scene_name(image: Path) -> str:
    """<city>_<seq>_<frame> of an image file."""
    return image.name[: -len(IMAGE_SUFFIX)]


def label_path(root: Path, layout: Layout, split: str, image: Path, annotation: str = "gtFine",
               kind: str = "labelTrainIds") -> Path:
    folder = cityscapes_folder(root, layout, annotation, split) / image.parent.name
    return folder / f"{scene_name(image)}_{annotation}_{kind}.png"


def list_images(root: Path, layout: Layout, split: str) -> list[Path]:
    image_dir = cityscapes_folder(root, layout, "leftImg8bit", split)
    if not image_dir.is_dir():
        archive = cityscapes_archive("leftImg8bit", split)
        synthetic = "cityscapes-coarse" if split == "train_extra" else "cityscapes"
        raise DatasetError(f"{image_dir}: no such folder; unpack {archive}.zip (cityscapes-dataset.com) into "
                           f"{layout.folder(root, archive).parent}, then run: segrun data prepare cityscapes {root} "
                           f"(or make synthetic data: segrun data synth {synthetic} {root})")
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise DatasetError(f"{image_dir}: no <city>/*{IMAGE_SUFFIX} images in it")
    return images


def prepare(root: Path, progress: bool = True) -> int:
    """Write *_labelTrainIds.png beside every *_labelIds.png the datasets read (fine train and val,
    coarse train_extra) that lacks one, using the official labelId -> trainId table (void becomes
    255). A label file that cannot be read is reported by name and skipped. Returns how many were
    written; existing files are kept, and each file is written under a temporary name then renamed,
    so the step can be interrupted and run again. The downloads are only read."""
    root = Path(root)
    layout = find_layout(root, CITYSCAPES)
    annotations = list(dict.fromkeys(layout.folder(root, cityscapes_archive(annotation, split))
                                     for split, annotation in PREPARED))  # gtFine's folder first
    if not any(folder.is_dir() for folder in annotations):
        raise DatasetError(f"{annotations[0]}: no such folder; it comes from gtFine_trainvaltest.zip on "
                           "cityscapes-dataset.com")
    sources = sorted(source for split, annotation in PREPARED for source in
                     cityscapes_folder(root, layout, annotation, split).glob(f"*/*_{annotation}_labelIds.png"))
    if not sources:
        raise DatasetError(f"{annotations[0]}: no <split>/<city>/*_labelIds.png files in it")
    def target(source: Path) -> Path:
        return source.with_name(source.name.replace("_labelIds.png", "_labelTrainIds.png"))

    written = 0
    for source in (progress_bar := bar([s for s in sources if not target(s).exists()], f"preparing {root}", "label",
                                       progress)):
        try:
            label_ids = read_label(source)
        except OSError as error:
            progress_bar.write(f"{error}, skipped")
            continue
        write_image(target(source), LABEL_ID_TO_TRAIN_ID[label_ids])
        written += 1
    return written


def unreadable(path: Path) -> bool:
    """Whether the file is there but cannot be read as a label image."""
    try:
        read_label(path)
    except OSError:
        return path.exists()
    return False


class CityscapesLayout(LabelledImages):
    """19 training classes, ignore 255. SOURCES maps a split to the (image split, annotation)
    pairs it reads. Left out, each named in `left_out` with the reason: the pairs of
    BROKEN_IN_DOWNLOAD, and coarse pairs whose label cannot be read (preparation skips those)."""

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
        self.layout = find_layout(self.root, CITYSCAPES)
        self.images, self.labels, self.annotations, self.left_out = [], [], [], []
        for image_split, annotation in self.SOURCES[split]:
            images, labels = self._pairs(image_split, annotation)
            self.images += images
            self.labels += labels
            self.annotations += [annotation] * len(images)

    def _pairs(self, image_split: str, annotation: str) -> tuple[list[Path], list[Path]]:
        """(images, prepared labels) of one source, less the pairs it leaves out (named in left_out)."""
        pairs = []
        for image in list_images(self.root, self.layout, image_split):
            if scene_name(image) in BROKEN_IN_DOWNLOAD:
                self.left_out.append(f"{scene_name(image)} ({BROKEN_IN_DOWNLOAD[scene_name(image)]})")
            else:
                pairs.append((image, label_path(self.root, self.layout, image_split, image, annotation)))
        missing = [(image, label) for image, label in pairs if not label.exists()]
        for image, label in missing:
            source = label_path(self.root, self.layout, image_split, image, annotation, "labelIds")
            # Fine labels are never left out: the fine sets are what results are compared on.
            if annotation != "gtCoarse" or not unreadable(source):
                raise DatasetError(f"{label}: missing ({len(missing)} of {len(pairs)} {image_split} {annotation} "
                                   f"labels); run: {self.prepare_command} {self.root}")
            self.left_out.append(f"{scene_name(image)} (its label {source.name} cannot be read)")
        unprepared = {label for _, label in missing}
        kept = [(image, label) for image, label in pairs if label not in unprepared]
        return [image for image, _ in kept], [label for _, label in kept]


class Cityscapes(CityscapesLayout):
    """Fine annotations: 2,975 train and 500 val images in the official release."""

    SOURCES = {"train": (FINE_TRAIN,), "val": (FINE_VAL,)}
    synthesize = staticmethod(synthetic_cityscapes.synthesize)


class CityscapesCoarse(CityscapesLayout):
    """The study's coarse set: the coarse labels of train_extra, 19,997 images (the 19,998 of the
    release less BROKEN_IN_DOWNLOAD), fine val."""

    SOURCES = {"train": (COARSE_TRAIN_EXTRA,), "val": (FINE_VAL,)}
    synthesize = staticmethod(synthetic_cityscapes.synthesize_with_coarse)


class CityscapesFineCoarse(CityscapesLayout):
    """Fine train plus the coarse set as one training set (22,972 images), fine val. With
    data.coarse_schedule = "linear_decay", the coarse share per epoch falls linearly to none."""

    mixes_coarse = True

    SOURCES = {"train": (FINE_TRAIN, COARSE_TRAIN_EXTRA), "val": (FINE_VAL,)}
    synthesize = staticmethod(synthetic_cityscapes.synthesize_with_coarse)
