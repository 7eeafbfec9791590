"""ADE20K as the SceneParsing benchmark publishes it (ADEChallengeData2016.zip): images/{training,
validation}/ADE_*.jpg with annotations/{training,validation}/ADE_*.png of stored values 0 to 150,
unpacked into the root (flat) or into ROOT/ADEChallengeData2016 (the archive's own folder). As the
benchmark scores it, stored 0 ("other") is ignored and every class shifts down by one: 150 classes.

`segrun data prepare ade20k ROOT` unpacks ROOT/ADEChallengeData2016.zip when its folders are not
there yet, and checks that every image has its annotation; the files need no conversion.
"""
import shutil
import zipfile
import zlib
from pathlib import Path

from segrun.data import synthetic_ade20k
from segrun.data.ade20k_labels import CLASS_NAMES, PALETTE, STORED_VALUES, UNLABELLED
from segrun.data.downloads import ADE20K, ADE20K_ARCHIVE, find_layout
from segrun.data.image_folders import MappedLabels, StoredValues, pairs_by_stem
from segrun.errors import DatasetError

SPLIT_FOLDERS = {"train": "training", "val": "validation"}
DOWNLOAD = f"{ADE20K_ARCHIVE}.zip (the MIT SceneParsing benchmark, sceneparsing.csail.mit.edu)"


def _unpack(root: Path, archive: Path) -> int:
    """Unpack the archive's ADEChallengeData2016/ into root through a temporary folder renamed at the
    end, so a failed or interrupted run leaves no half-unpacked dataset (a failed one removes the
    temporary folder, the next run one an interrupted run left); returns how many files it holds."""
    partial = root / f".{ADE20K_ARCHIVE}.unpacking"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as download:
            names = [name for name in download.namelist() if not name.endswith("/")]
            for folder in ("images", "annotations"):
                if not any(name.startswith(f"{ADE20K_ARCHIVE}/{folder}/") for name in names):
                    raise DatasetError(f"{archive}: holds no {ADE20K_ARCHIVE}/{folder}/; is it {DOWNLOAD}?")
            download.extractall(partial)
        (partial / ADE20K_ARCHIVE).rename(root / ADE20K_ARCHIVE)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise DatasetError(f"{archive}: cannot be unpacked ({error}); fetch {DOWNLOAD} again, or free disk space if "
                           "it is full") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return len(names)


def unpacked(root: Path) -> bool:
    """Whether both folders of the dataset are under root, in either layout."""
    return any(all(layout.folder(root, role).is_dir() for role in layout.folders) for layout in ADE20K.values())


def prepare(root: Path, progress: bool = True) -> int:
    """Unpack ROOT/ADEChallengeData2016.zip if the dataset's folders are not there, then check that
    the train and val splits pair up. Returns how many files were unpacked."""
    root = Path(root)
    archive, target = root / f"{ADE20K_ARCHIVE}.zip", root / ADE20K_ARCHIVE
    files = 0
    if not unpacked(root):
        if not archive.is_file():
            raise DatasetError(f"{root}: holds neither images/ and annotations/ (in it or in {ADE20K_ARCHIVE}/) nor "
                               f"{archive.name}; put {DOWNLOAD} there and run this again (or make synthetic data: "
                               f"segrun data synth ade20k {root})")
        if target.exists():
            raise DatasetError(f"{target}: there, but without both images/ and annotations/; remove it, and this "
                               f"unpacks {archive.name} there")
        if progress:
            print(f"unpacking {archive}")
        files = _unpack(root, archive)
    for split in SPLIT_FOLDERS:
        ADE20KDataset(root, split)
    return files


class ADE20KDataset(MappedLabels):
    """150 classes; stored 0 ignored (255), stored v is class v - 1."""

    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    palette = PALETTE
    stored_values = StoredValues(STORED_VALUES, UNLABELLED)
    value_fix = "ADE20K's annotations hold 0 to 150; replace the file with the one from the download"
    prepare = staticmethod(prepare)
    prepare_command = "segrun data prepare ade20k"
    synthesize = staticmethod(synthetic_ade20k.synthesize)

    def __init__(self, root, split: str, transform=None):
        self.root, self.split, self.transform = Path(root), split, transform
        self.layout = find_layout(self.root, ADE20K)
        folder = SPLIT_FOLDERS[split]
        fix = f"put {DOWNLOAD} into {self.root} and run: {self.prepare_command} {self.root}"
        self.images, self.labels = pairs_by_stem(self.layout.folder(self.root, "images") / folder,
                                                 self.layout.folder(self.root, "annotations") / folder, fix)

    def describe_files(self) -> str:
        return self.layout.describe()
