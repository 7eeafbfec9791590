"""The LightningDataModule of a spec: train and val datasets with their pipelines."""
import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

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
    """Samplers are made here (the Trainer runs with use_distributed_sampler=False): a seeded
    DistributedSampler for training, and an unrepeated one for validation under DDP."""

    def __init__(self, data: DataSpec, eval: EvalSpec, seed: int = 0):
        super().__init__()
        self.data = data
        self.eval = eval
        self.seed = seed
        self.dataset_class = DATASETS[data.dataset]
        self.root = resolve_root(data.root)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_set = self.dataset_class(self.root, "train", build_pipeline(self.data.train_pipeline))
        self.val_set = self.dataset_class(self.root, "val", build_pipeline(self.data.val_pipeline))

    def _loader(self, dataset, batch_size: int, sampler, drop_last: bool) -> DataLoader:
        workers = self.data.num_workers
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=workers,
                          pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        if distributed():
            sampler = DistributedSampler(self.train_set, shuffle=True, seed=self.seed, drop_last=True)
        else:
            sampler = RandomSampler(self.train_set)
        return self._loader(self.train_set, self.data.batch_size, sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        # Each process validates its own share and the metric sums the confusion matrices, so no
        # image may be repeated to even out the shares (DistributedSampler would pad by repeating).
        sampler = UnrepeatedDistributedSampler(self.val_set, shuffle=False) if distributed() else SequentialSampler(self.val_set)
        return self._loader(self.val_set, self.eval.batch_size, sampler, drop_last=False)


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()
