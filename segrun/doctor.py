"""`segrun doctor`: what this machine offers segrun."""
import platform

import torch

from segrun import ops
from segrun.data import DATASETS, data_home
from segrun.data.downloads import CITYSCAPES, find_layout


def _datasets_found() -> list[str]:
    home = data_home()
    if not home.is_dir():
        return [f"{home}: no such folder (set SEGRUN_DATA to where your datasets live)"]
    lines = []
    for folder in sorted(p for p in home.iterdir() if p.is_dir()):
        layout = find_layout(folder, CITYSCAPES)
        images_folder = layout.folder(folder, "leftImg8bit_trainvaltest")
        if images_folder.is_dir():
            images = sum(1 for _ in images_folder.glob("*/*/*_leftImg8bit.png"))
            labels_folder = layout.folder(folder, "gtFine_trainvaltest")
            prepared = sum(1 for _ in labels_folder.glob("*/*/*_gtFine_labelTrainIds.png"))
            lines.append(f"{folder}: cityscapes ({layout.name} layout), {images} images, {prepared} prepared fine "
                         "labels")
    return lines or [f"{home}: no dataset folders found"]


def report() -> str:
    lines = [
        f"python      {platform.python_version()}",
        f"torch       {torch.__version__} (CUDA build {torch.version.cuda or 'none'})",
        f"cuda        {'available' if torch.cuda.is_available() else 'not available'}",
    ]
    for index in range(torch.cuda.device_count()):
        lines.append(f"  device {index}: {torch.cuda.get_device_name(index)}")
    lines.append(f"ops (SEGRUN_OPS={ops.extension.mode()}):")
    for name, device, backend, reason in ops.backends():
        lines.append(f"  {name:<18} {device:<5} {backend}: {reason}")
    lines.append(f"datasets (known: {', '.join(DATASETS)}) under {data_home()}:")
    lines += [f"  {line}" for line in _datasets_found()]
    return "\n".join(lines)
