"""A user's own data (`dataset = "folder"`): an image folder and a label folder per split under
the dataset root, each image paired with the label of the same file stem, classes and stored label
values declared in the spec's [data] table. ADE20K reads its files the same way (segrun.data.ade20k).

Stored label values are mapped to training ids through a lookup table: class i is stored as
label_values[i] (i itself when unset), unlabelled pixels as ignore_index (255 when unset) and become
255 for training. Any other stored value is a fault naming the file and the value.
"""
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from attrs import field, frozen

from segrun.data.image_io import read_label, write_image
from segrun.data.labelled_images import LabelledImages
from segrun.data.pascal_context_labels import voc_palette
from segrun.errors import DatasetError
from segrun.terminal import bar

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
LABEL_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")  # lossless only: a JPEG would blur the label values
IGNORED = 255  # the training id of unlabelled pixels
NO_CLASS = 254  # the training id a stored value that is no class is mapped to, so that it is found
MAX_CLASSES = NO_CLASS  # training ids are uint8 and 254, 255 are taken
SPLIT_KEYS = {"train": 1, "val": 2}  # a split's part of a synthetic scene's seed


def files_by_stem(folder: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
    """{file stem: path} of the files in `folder` with one of `suffixes` (any case)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if path.stem in found:
            raise DatasetError(f"{path}: a second {what} named {path.stem} (beside {found[path.stem].name}); "
                               f"keep one of them")
        found[path.stem] = path
    return found


def pairs_by_stem(image_dir: Path, label_dir: Path, fix: str) -> tuple[list[Path], list[Path]]:
    """(images, labels) of the two folders paired by file stem, in stem order. Every image needs a
    label and every label an image; `fix` is how to make the folders (for the errors)."""
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such folder; {fix}")
    images = files_by_stem(image_dir, IMAGE_SUFFIXES, "image")
    labels = files_by_stem(label_dir, LABEL_SUFFIXES, "label")
    if not images:
        raise DatasetError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in it; {fix}")
    for found, folder, other, other_folder, what in ((images, image_dir, labels, label_dir, "images"),
                                                     (labels, label_dir, images, image_dir, "labels")):
        unpaired = sorted(set(found) - set(other))
        if unpaired:
            raise DatasetError(f"{folder}: {len(unpaired)} {what} without a file of the same name in {other_folder} "
                               f"(first: {found[unpaired[0]].name}); add the missing files or remove these")
    stems = sorted(images)
    return [images[stem] for stem in stems], [labels[stem] for stem in stems]


class StoredValues:
    """Stored label value -> training id: class i stored as values[i], unlabelled pixels as `ignore`."""

    def __init__(self, values: Sequence[int], ignore: int):
        self.values, self.ignore = tuple(values), ignore
        self.lookup = np.full(65536, NO_CLASS, np.uint8)  # 8- and 16-bit label files
        self.lookup[list(self.values)] = np.arange(len(self.values), dtype=np.uint8)
        self.lookup[ignore] = IGNORED

    def training_ids(self, stored: np.ndarray) -> np.ndarray:
        return self.lookup[stored]

    def unknown(self, stored: np.ndarray) -> np.ndarray:
        """The stored values that are neither a class nor the ignore value."""
        values = np.unique(stored)
        return values[self.lookup[values] == NO_CLASS]

    def describe(self) -> str:
        """e.g. "0 to 149" or "10, 20, 30"."""
        values = self.values
        if values == tuple(range(values[0], values[0] + len(values))):
            return f"{values[0]} to {values[-1]}"
        return ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")


class MappedLabels(LabelledImages):
    """Labelled images whose stored values go through `stored_values` to training ids; a stored
    value that is neither a class nor the ignore value is a fault naming it (`value_fix` says what to do)."""

    stored_values: StoredValues
    value_fix: str

    def read_label(self, index: int) -> np.ndarray:
        return self.stored_values.training_ids(read_label(self.labels[index]))

    def _value_fault(self, index: int, label: np.ndarray) -> str | None:
        if not (label == NO_CLASS).any():
            return None
        stored = read_label(self.labels[index])
        values = self.stored_values.unknown(stored)
        pixels = int(np.isin(stored, values).sum())
        return (f"{self.labels[index]}: holds label value {', '.join(map(str, values[:5]))} ({pixels} pixels), neither "
                f"a class (stored as {self.stored_values.describe()}) nor the ignore value {self.stored_values.ignore}; "
                f"{self.value_fix}")


def stored_values(data) -> tuple[int, ...]:
    """The stored value of each class of a dataset = "folder" DataSpec: label_values, else 0 to N-1."""
    return tuple(data.label_values or range(len(data.classes)))


def ignore_value(data) -> int:
    """The stored value of unlabelled pixels of a dataset = "folder" DataSpec: ignore_index, else 255."""
    return IGNORED if data.ignore_index is None else data.ignore_index


@frozen
class FolderData:
    """The spec's declaration of a user's dataset, standing where a dataset class stands in
    segrun.data.DATASETS: it carries num_classes, class_names, ignore_index (the training id of
    unlabelled pixels, 255) and palette, FolderData(...)(root, split, transform) reads a split, and
    `synthesize` writes made-up scenes in its layout (for --smoke and [data.synthetic])."""

    images: str  # folder under the root, "{split}" standing for the split's name
    labels: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    label_values: tuple[int, ...]
    ignore_value: int  # the stored value of unlabelled pixels
    ignore_index = IGNORED
    num_classes: int = field(init=False)

    @num_classes.default
    def _count(self) -> int:
        return len(self.class_names)

    @classmethod
    def of(cls, data) -> "FolderData":
        """From a checked DataSpec with dataset = "folder" (segrun.build checks the keys)."""
        return cls(images=data.images, labels=data.labels, class_names=tuple(data.classes),
                   palette=tuple(data.palette or voc_palette(len(data.classes))), label_values=stored_values(data),
                   ignore_value=ignore_value(data))

    def __call__(self, root, split: str, transform=None) -> "ImageFolders":
        return ImageFolders(root, split, transform, folders=self)

    def synthesize(self, root: Path, train_images: int = 80, val_images: int = 20, height: int = 128,
                   width: int = 160, seed: int = 0, progress: bool = True) -> int:
        """Write made-up scenes into the image and label folders under root: a background of the
        first class, objects of the others and regions of the ignore value, stored as declared
        (16-bit label files where a value needs them). Files already there are kept; each scene
        depends only on (seed, split, index). Returns how many were written."""
        from segrun.data.synthetic_pascal_context import render_scene  # cv2 drawing, only where scenes are made

        root, written = Path(root), 0
        dtype = np.uint8 if max(*self.label_values, self.ignore_value) < 256 else np.uint16
        for split, count in (("train", train_images), ("val", val_images)):
            image_dir = root / self.images.format(split=split)
            label_dir = root / self.labels.format(split=split)
            for index in bar(range(count), f"synthesising {root} {split}", "image", progress):
                name = f"scene_{index:05d}.png"
                if (image_dir / name).exists() and (label_dir / name).exists():
                    continue
                scene_seed = int(np.random.SeedSequence([seed, SPLIT_KEYS[split], index]).generate_state(1)[0])
                image, label = render_scene(height, width, scene_seed, self.label_values[:1], self.label_values,
                                            (self.ignore_value,))
                write_image(label_dir / name, label.astype(dtype))
                write_image(image_dir / name, image)
                written += 1
        return written


class ImageFolders(MappedLabels):
    """One split of a FolderData dataset."""

    value_fix = "fix the file, or add the value to data.label_values (or set data.ignore_index to it)"

    def __init__(self, root, split: str, transform=None, *, folders: FolderData):
        self.root, self.split, self.transform, self.folders = Path(root), split, transform, folders
        self.num_classes, self.class_names, self.palette = folders.num_classes, folders.class_names, folders.palette
        self.stored_values = StoredValues(folders.label_values, folders.ignore_value)
        fix = (f'put the {split} split there, or point data.images and data.labels ("{{split}}" stands for train '
               "or val) at your folders under data.root")
        self.images, self.labels = pairs_by_stem(self.root / folders.images.format(split=split),
                                                 self.root / folders.labels.format(split=split), fix)

    def describe_files(self) -> str:
        return f"images in {self.folders.images}, labels in {self.folders.labels}, paired by file name"


def folder_problem(data) -> tuple[str, str] | None:
    """(data key, problem) of the first bad [data] key of a dataset = "folder" spec, or of a folder
    key set for another dataset; None for a good spec."""
    keys = ("images", "labels", "classes", "palette", "ignore_index", "label_values")
    if data.dataset != "folder":
        given = next((key for key in keys if getattr(data, key) is not None), None)
        return None if given is None else (given, f'only dataset = "folder" reads it; remove it for {data.dataset}')
    for key, what in (("images", 'the image folder under data.root, such as "images/{split}"'),
                      ("labels", 'the label folder under data.root, such as "labels/{split}"'),
                      ("classes", 'the class names in training-id order, such as ["background", "cell"]')):
        if getattr(data, key) is None:
            return key, f'dataset = "folder" needs it: {what}'
    for key in ("images", "labels"):
        pattern = getattr(data, key)
        try:
            folders = {pattern.format(split=split) for split in ("train", "val")}
        except (KeyError, IndexError, ValueError, AttributeError):
            folders = set()
        if len(folders) != 2:
            return key, f'{pattern!r} is no folder pattern: it holds "{{split}}" (for train and val) and no other field'
    if data.images == data.labels:
        return "labels", "names the image folder too; keep the labels in a folder of their own"
    count = len(data.classes)
    if not 1 <= count <= MAX_CLASSES:
        return "classes", f"{count} classes; a dataset has 1 to {MAX_CLASSES}"
    named = next((name for name in data.classes if not name.strip() or data.classes.count(name) > 1), None)
    if named is not None:
        return "classes", f"{named!r} {'is empty' if not named.strip() else 'names two classes'}; give each class a name of its own"
    for key in ("palette", "label_values"):
        given = getattr(data, key)
        if given is not None and len(given) != count:
            return key, f"{len(given)} entries for the {count} classes; give one per class, in data.classes' order"
    bad_colour = next((colour for colour in data.palette or () if not all(0 <= c <= 255 for c in colour)), None)
    if bad_colour is not None:
        return "palette", f"{list(bad_colour)} is no RGB colour; each entry is [red, green, blue], each 0 to 255"
    values = stored_values(data)
    bad_value = next((value for value in values if not 0 <= value <= 65535), None)
    if bad_value is not None:
        return "label_values", f"{bad_value} cannot be stored in a label file (0 to 65535)"
    repeated = next((value for value in values if values.count(value) > 1), None)
    if repeated is not None:
        return "label_values", f"{repeated} stands for two classes; give each class its own value"
    ignore = ignore_value(data)
    if ignore in values:
        key = "ignore_index" if data.ignore_index is not None else "label_values"
        return key, (f"{ignore} is both the ignore value and the stored value of class "
                     f"{data.classes[values.index(ignore)]!r}; set data.ignore_index to a value no class is stored "
                     "as, or give data.label_values")
    return None
