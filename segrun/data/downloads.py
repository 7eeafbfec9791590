"""What the published downloads hold: where their folders lie under a dataset root, and the one
file in them that training must leave out.

Two layouts of the same downloads are found. "flat": every archive unpacked straight into the
root (ROOT/leftImg8bit/..., ROOT/VOCdevkit/...). "study": each archive unpacked into a folder named
after it, as the study's README lays them out (ROOT/leftImg8bit_trainvaltest/leftImg8bit/...,
ROOT/VOCtrainval_03-May-2010/VOCdevkit/...). Preparation, the datasets and the synthetic
generators all take their paths from the tables here.
"""
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from attrs import field, frozen

ARRANGEMENTS = {
    "flat": "every download unpacked into the root",
    "study": "each download unpacked into a folder named after it, as in the study's README",
}
LAYOUT_NAMES = tuple(ARRANGEMENTS)


@frozen
class Layout:
    name: str  # a key of ARRANGEMENTS
    # a folder's role (the download archive it comes from, or what preparation writes) -> its path under the root
    folders: Mapping[str, str] = field(converter=lambda f: MappingProxyType(dict(f)))

    def folder(self, root: Path, role: str) -> Path:
        return Path(root) / self.folders[role]

    def found_in(self, root: Path) -> bool:
        return any(self.folder(root, role).is_dir() for role in self.folders)

    def describe(self) -> str:
        """e.g. "flat layout (every download unpacked into the root: leftImg8bit, gtFine, gtCoarse)"."""
        return f"{self.name} layout ({ARRANGEMENTS[self.name]}: {', '.join(dict.fromkeys(self.folders.values()))})"


def find_layout(root: Path, layouts: Mapping[str, Layout]) -> Layout:
    """The layout of the folders under root: the study's when any of its folders is there, else the
    flat one (also when nothing is there yet, so that errors name the flat paths). The study's is
    tried first because its archive folders carry some of the flat layout's folder names
    (ROOT/gtCoarse/gtCoarse, ROOT/trainval/trainval)."""
    study = layouts["study"]
    return study if study.found_in(root) else layouts["flat"]


# ---- Cityscapes: roles are the archives' names without .zip ----------------------------------------

CITYSCAPES = {
    "flat": Layout("flat", {
        "leftImg8bit_trainvaltest": "leftImg8bit", "leftImg8bit_trainextra": "leftImg8bit",
        "gtFine_trainvaltest": "gtFine", "gtCoarse": "gtCoarse"}),
    "study": Layout("study", {
        "leftImg8bit_trainvaltest": "leftImg8bit_trainvaltest/leftImg8bit",
        "leftImg8bit_trainextra": "leftImg8bit_trainextra/leftImg8bit",
        "gtFine_trainvaltest": "gtFine_trainvaltest/gtFine", "gtCoarse": "gtCoarse/gtCoarse"}),
}


def cityscapes_archive(top: str, split: str) -> str:
    """The download holding the `split` folder of `top` (leftImg8bit, gtFine or gtCoarse)."""
    if top == "leftImg8bit":
        return "leftImg8bit_trainextra" if split == "train_extra" else "leftImg8bit_trainvaltest"
    return "gtCoarse" if top == "gtCoarse" else "gtFine_trainvaltest"


def cityscapes_folder(root: Path, layout: Layout, top: str, split: str) -> Path:
    """ROOT/.../<top>/<split>, holding <city>/ folders."""
    return layout.folder(root, cityscapes_archive(top, split)) / split


# The study found this image of leftImg8bit_trainextra.zip broken and left it out of its coarse
# set (19,997 of the 19,998 train_extra images). segrun leaves out the image and its label together,
# by name, wherever it appears (the study removed only the image from its list, which shifted every
# later coarse label onto the wrong image).
BROKEN_IN_DOWNLOAD = {"troisdorf_000000_000073": "its image is broken in leftImg8bit_trainextra.zip"}


# ---- PASCAL Context: the two downloads, and where preparation writes -------------------------------

PASCAL_CONTEXT = {
    "flat": Layout("flat", {
        "VOCtrainval_03-May-2010": "VOCdevkit/VOC2010", "trainval": "trainval",
        "Images": "Images", "Annotations": "Annotations"}),
    # Prepared files go where the study's own preparation writes them, so its users' are read as they are.
    "study": Layout("study", {
        "VOCtrainval_03-May-2010": "VOCtrainval_03-May-2010/VOCdevkit/VOC2010", "trainval": "trainval/trainval",
        "Images": "VOC2010_Context/Images", "Annotations": "VOC2010_Context/Annotations"}),
}


# ---- ADE20K: the SceneParsing benchmark's ADEChallengeData2016.zip ----------------------------------

ADE20K_ARCHIVE = "ADEChallengeData2016"
ADE20K = {
    "flat": Layout("flat", {"images": "images", "annotations": "annotations"}),
    "study": Layout("study", {"images": f"{ADE20K_ARCHIVE}/images", "annotations": f"{ADE20K_ARCHIVE}/annotations"}),
}
