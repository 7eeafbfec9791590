"""What every dataset shares: image files paired with label files, read and transformed."""
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from segrun.data.downloads import Layout
from segrun.data.image_io import read_label, read_rgb


class LabelledImages(Dataset):
    """Items: (image float [3, H, W] after the transform, labels int64 [H, W]). Subclasses fill
    `images` and `labels` (paths, in pairs) and may map stored labels to training ids in
    `read_label`; they carry num_classes, class_names, ignore_index and palette."""

    ignore_index = 255
    images: list
    labels: list
    layout: Layout  # where the files were found (segrun.data.downloads)
    left_out: Sequence[str] = ()  # pairs of the download this dataset leaves out: "<name> (<why>)"

    def __len__(self) -> int:
        return len(self.images)

    def read_label(self, index: int) -> np.ndarray:
        """Training ids uint8 [H, W] of sample `index`, ignore 255."""
        return read_label(self.labels[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = read_rgb(self.images[index]), self.read_label(index)
        if self.transform is not None:
            transformed = self.transform(image=image, mask=label)
            image, label = transformed["image"], transformed["mask"]
        image = torch.as_tensor(np.ascontiguousarray(image))
        if image.dim() == 3 and image.shape[-1] == 3:  # still HWC: no ToTensorV2 in the transform
            image = image.permute(2, 0, 1)
        return image.float(), torch.as_tensor(np.ascontiguousarray(label)).long()
