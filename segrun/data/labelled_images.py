"""What every dataset shares: image files paired with label files, read, checked and transformed."""
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from segrun.data.downloads import Layout
from segrun.data.image_io import image_size, read_label, read_rgb
from segrun.errors import DatasetError


class DataFault(DatasetError):
    """An image or label file training cannot use: unreadable, of another size than its pair, or
    holding a label value that is neither a class nor the ignore index. The message names the file."""

    def __init__(self, message: str):
        # A DataLoader worker's exception reaches the main process re-made from its whole traceback
        # ("Caught DataFault in DataLoader worker process 0. Original Traceback ... DataFault: <line>");
        # the line after the last "DataFault: " is the one raised.
        if message.startswith("Caught "):
            message = message.rstrip().rpartition(f"{DataFault.__name__}: ")[2]
        super().__init__(message)


class LabelledImages(Dataset):
    """Items: (image float [3, H, W] after the transform, labels int64 [H, W]). Subclasses fill
    `images` and `labels` (paths, in pairs) and may map stored labels to training ids in
    `read_label`; they carry num_classes, class_names, ignore_index and palette. Every sample is
    checked as it is read (see `faults`); a bad one raises DataFault."""

    ignore_index = 255
    images: list
    labels: list
    layout: Layout  # where the files were found (segrun.data.downloads)
    left_out: Sequence[str] = ()  # pairs of the download this dataset leaves out: "<name> (<why>)"

    def __len__(self) -> int:
        return len(self.images)

    def read_label(self, index: int) -> np.ndarray:
        """Training ids uint8 [H, W] of sample `index`, ignore 255, unchecked."""
        return read_label(self.labels[index])

    def describe_files(self) -> str:
        """Where the files were found, for `segrun validate`."""
        return f"labels prepared; {self.layout.describe()}"

    def _value_fault(self, index: int, label: np.ndarray) -> str | None:
        if label.size == 0 or label.max() < self.num_classes:  # the common case, without counting
            return None
        bad = (label >= self.num_classes) & (label != self.ignore_index)
        if not bad.any():
            return None
        values = np.unique(label[bad])
        return (f"{self.labels[index]}: holds label value {', '.join(map(str, values[:5]))} ({int(bad.sum())} pixels), "
                f"neither a class (0 to {self.num_classes - 1}) nor the ignore index {self.ignore_index}; fix or "
                "remove the file")

    def _read(self, index: int) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
        """(image, training ids, what is wrong with the pair): each file read once; None where unreadable."""
        faults = []
        try:
            image = read_rgb(self.images[index])
        except OSError as error:
            image = None
            faults.append(f"{error}; replace it or remove it with its label")
        try:
            label = self.read_label(index)
        except OSError as error:
            label = None
            faults.append(f"{error}; replace it or remove it with its image")
        if label is not None:
            faults += filter(None, [self._value_fault(index, label)])
        if image is not None and label is not None:
            faults += filter(None, [self._size_fault(index, image.shape, label)])
        return image, label, faults

    def faults(self, index: int) -> list[str]:
        """What is wrong with sample `index`, one line per fault (none for a good pair)."""
        return self._read(index)[2]

    def label(self, index: int) -> np.ndarray:
        """Training ids of sample `index`, checked against its values and its image's size (read
        from the image's header); DataFault for an unreadable file, a bad value or a size mismatch."""
        try:
            label = self.read_label(index)
        except OSError as error:
            raise DataFault(f"{error}; replace it or remove it with its image") from None
        try:
            image_shape = image_size(self.images[index])
        except OSError as error:
            raise DataFault(f"{error}; replace it or remove it with its label") from None
        fault = self._value_fault(index, label) or self._size_fault(index, image_shape, label)
        if fault:
            raise DataFault(fault)
        return label

    def _size_fault(self, index: int, image_shape, label: np.ndarray) -> str | None:
        if tuple(image_shape[:2]) == label.shape:
            return None
        return (f"{self.labels[index]}: {label.shape[0]}x{label.shape[1]} but its image {self.images[index]} is "
                f"{image_shape[0]}x{image_shape[1]}; an image and its label must be the same size")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label, faults = self._read(index)
        if faults:
            raise DataFault(faults[0])
        if self.transform is not None:
            transformed = self.transform(image=image, mask=label)
            image, label = transformed["image"], transformed["mask"]
        image = torch.as_tensor(np.ascontiguousarray(image))
        if image.dim() == 3 and image.shape[-1] == 3:  # still HWC: no ToTensorV2 in the transform
            image = image.permute(2, 0, 1)
        return image.float(), torch.as_tensor(np.ascontiguousarray(label)).long()
