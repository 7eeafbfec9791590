"""The LightningDataModule of a spec: train and val datasets with their pipelines."""
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from segrun.data import DATASETS, resolve_root
from segrun.data.transforms import build_pipeline
from segrun.spec import DataSpec, EvalSpec


def ensure_dataset(data: DataSpec, progress: bool = True) -> None:
    """Synthesise and prepare the dataset when the spec asks for synthetic data and it is missing
    or incomplete (both steps skip files already written)."""
    if data.synthetic is None:
        return
    dataset_class = DATASETS[data.dataset]
    root = resolve_root(data.root)
    size = data.synthetic
    dataset_class.synthesize(root, size.train_images, size.val_images, size.height, size.width, size.seed, progress=progress)
    dataset_class.prepare(root, progress=progress)


class SegmentationDataModule(pl.LightningDataModule):
    def __init__(self, data: DataSpec, eval: EvalSpec):
        super().__init__()
        self.data = data
        self.eval = eval
        self.dataset_class = DATASETS[data.dataset]
        self.root = resolve_root(data.root)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_set = self.dataset_class(self.root, "train", build_pipeline(self.data.train_pipeline))
        self.val_set = self.dataset_class(self.root, "val", build_pipeline(self.data.val_pipeline))

    def _loader(self, dataset, batch_size: int, shuffle: bool) -> DataLoader:
        workers = self.data.num_workers
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle, num_workers=workers,
                          pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.data.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval.batch_size, shuffle=False)
