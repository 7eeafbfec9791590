"""Dataset registry: one plain dict from the spec's data.dataset name to its Dataset class.

A dataset class carries num_classes, class_names, ignore_index and palette, reads (root, split,
transform), and offers `prepare(root)` (with its `prepare_command`) and `synthesize(root, ...)`.
"folder" is a user's own data, declared in the spec's [data] table: `dataset_of` makes its
FolderData, which stands where a class stands.
"""
import os
from pathlib import Path

from segrun.data.ade20k import ADE20KDataset
from segrun.data.cityscapes import Cityscapes, CityscapesCoarse, CityscapesFineCoarse
from segrun.data.image_folders import FolderData
from segrun.data.pascal_context import PascalContext59, PascalContext60

DATASETS = {
    "cityscapes": Cityscapes,
    "cityscapes_coarse": CityscapesCoarse,
    "cityscapes_fine_coarse": CityscapesFineCoarse,
    "pascal_context59": PascalContext59,
    "pascal_context60": PascalContext60,
    "ade20k": ADE20KDataset,
    "folder": FolderData,
}

# `segrun data synth|prepare NAME ROOT`: the dataset whose generator and preparation NAME runs.
DOWNLOAD_NAMES = {"cityscapes": Cityscapes, "cityscapes-coarse": CityscapesCoarse, "pascal-context": PascalContext60,
                  "ade20k": ADE20KDataset}


def dataset_of(data):
    """The dataset a DataSpec names: its class, or for "folder" the FolderData of its [data] keys."""
    dataset = DATASETS[data.dataset]
    return dataset.of(data) if dataset is FolderData else dataset


def data_home() -> Path:
    """Parent folder of relative dataset roots: $SEGRUN_DATA, else ./data."""
    return Path(os.environ.get("SEGRUN_DATA", "data"))


def resolve_root(root: str) -> Path:
    path = Path(root).expanduser()
    return path if path.is_absolute() else data_home() / path


__all__ = ["DATASETS", "DOWNLOAD_NAMES", "data_home", "dataset_of", "resolve_root"]
