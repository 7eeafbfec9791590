"""Dataset registry: one plain dict from the spec's data.dataset name to its Dataset class.

A dataset class carries num_classes, class_names and ignore_index, reads (root, split,
transform), and may offer `prepare(root)` and `synthesize(root, ...)`.
"""
import os
from pathlib import Path

from segrun.data.cityscapes import Cityscapes

DATASETS = {"cityscapes": Cityscapes}


def data_home() -> Path:
    """Parent folder of relative dataset roots: $SEGRUN_DATA, else ./data."""
    return Path(os.environ.get("SEGRUN_DATA", "data"))


def resolve_root(root: str) -> Path:
    path = Path(root).expanduser()
    return path if path.is_absolute() else data_home() / path


__all__ = ["DATASETS", "data_home", "resolve_root"]
