"""ADE20K as the SceneParsing benchmark publishes it (ADEChallengeData2016.zip): images/{training,
validation}/ADE_*.jpg with annotations/{training,validation}/ADE_*.png of stored values 0 to 150,
unpacked into the root (flat) or into ROOT/ADEChallengeData2016 (the archive's own folder). As the
benchmark scores it, stored 0 ("other") is ignored and every class shifts down by one: 150 classes.

`segrun data prepare ade20k ROOT` unpacks ROOT/ADEChallengeData2016.zip when its folders are not
there yet, and checks that every image has its annotation; the files need no conversion.
"""
import shutil
import zipfile
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
    end, so an interrupted run leaves no half-unpacked dataset; returns how many files it holds."""
    partial = root / f".{ADE20K_ARCHIVE}.unpacking"
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run
    try:
        with zipfile.ZipFile(archive) as download:
            names = [name for name in download.namelist() if not name.endswith("/")]
            if not any(name.startswith(f"{ADE20K_ARCHIVE}/images/") for name in names):
                raise DatasetError(f"{archive}: holds no {ADE20K_ARCHIVE}/images/; is it {DOWNLOAD}?")
            download.extractall(partial)
    except zipfile.BadZipFile as error:
        raise DatasetError(f"{archive}: not a readable zip file ({error}); fetch {DOWNLOAD} again") from None
    (partial / ADE20K_ARCHIVE).rename(root / ADE20K_ARCHIVE)
    shutil.rmtree(partial)
    return len(names)


def prepare(root: Path, progress: bool = True) -> int:
    """Unpack ROOT/ADEChallengeData2016.zip if the dataset's folders are not there, then check that
    the train and val splits pair up. Returns how many files were unpacked."""
    root = Path(root)
    archive = root / f"{ADE20K_ARCHIVE}.zip"
    unpacked = 0
    if not find_layout(root, ADE20K).found_in(root):
        if not archive.is_file():
            raise DatasetError(f"{root}: holds neither images/ and annotations/ nor {archive.name}; put {DOWNLOAD} "
                               f"there and run this again (or make synthetic data: segrun data synth ade20k {root})")
        if progress:
            print(f"unpacking {archive}")
        unpacked = _unpack(root, archive)
    for split in SPLIT_FOLDERS:
        ADE20KDataset(root, split)
    return unpacked


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
        fix = f"run: {self.prepare_command} {self.root} (with {DOWNLOAD} in it)"
        self.images, self.labels = pairs_by_stem(self.layout.folder(self.root, "images") / folder,
                                                 self.layout.folder(self.root, "annotations") / folder, fix)

    def describe_files(self) -> str:
        return self.layout.describe()
