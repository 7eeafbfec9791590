"""The LightningDataModule of a spec: train and val datasets with their pipelines."""
import atexit
import os
import weakref

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler

from segrun.data import dataset_of, resolve_root
from segrun.data.sampling import (
    CoarseDecaySampler,
    ResumableSampler,
    epochs_vary_in_length,
    optimizer_steps,
)
from segrun.data.transforms import build_pipeline
from segrun.spec import DataSpec, EvalSpec, TestSpec
from segrun.stopping import ignore_stop_signals


def ensure_dataset(data: DataSpec, progress: bool = True) -> None:
    """Synthesise and prepare the dataset when the spec asks for synthetic data and it is missing
    or incomplete (both steps skip files already written)."""
    if data.synthetic is None:
        return
    dataset = dataset_of(data)
    root = resolve_root(data.root)
    size = data.synthetic
    dataset.synthesize(root, size.train_images, size.val_images, size.height, size.width, size.seed, progress=progress)
    if hasattr(dataset, "prepare"):  # a folder dataset is written as it is read
        dataset.prepare(root, progress=progress)


def loader_workers(num_workers: int | str) -> int:
    """data.num_workers, with "auto" as the CPU cores this process may use divided among the
    GPUs of this machine (processes under DDP), less one for the training loop, at most 8."""
    if num_workers != "auto":
        return int(num_workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    processes = max(1, torch.cuda.device_count())
    return max(0, min(8, cores // processes - 1))


# Every loader made here, so that their workers are shut down before the interpreter exits: the
# workers ignore stop signals (stopping.ignore_stop_signals), and multiprocessing's own exit handler
# would stop them with SIGTERM and wait for them forever. Lightning shuts the loaders of the loop it
# ran down itself, but not always all of them (training stopped during validation, an error).
_loaders: "weakref.WeakSet[DataLoader]" = weakref.WeakSet()


@atexit.register  # runs before multiprocessing's handler, registered earlier (at `import torch`)
def _shut_down_workers() -> None:
    for loader in list(_loaders):
        iterator = getattr(loader, "_iterator", None)  # a persistent_workers loader's live iterator
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()


class SeededAugmentations(Dataset):
    """The train set, each sample augmented with the seed its ResumableSampler gives it: the draws
    follow from the run's seed, the epoch and the sample's place in it, not from the loader's
    workers or from what was drawn before, so a run repeats exactly, with any number of workers,
    and a resumed run augments as the uninterrupted one did."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        self.dataset.transform.set_random_seed(seed)
        return self.dataset[index]


class ResumableLoader(DataLoader):
    """The train loader: Lightning saves the state of its ResumableSampler in each checkpoint and
    hands it back on resuming (a loader with state_dict and load_state_dict is "resumable" to it)."""

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


class SegmentationDataModule(pl.LightningDataModule):
    """Samplers are made here (the Trainer runs with use_distributed_sampler=False): a seeded
    DistributedSampler for training, and an unrepeated one for validation and test under DDP.
    The test set is the val split under the [test] pipeline (the study's protocol; Cityscapes'
    test labels are not public)."""

    def __init__(self, data: DataSpec, eval: EvalSpec, seed: int = 0, test: TestSpec | None = None):
        super().__init__()
        self.data = data
        self.eval = eval
        self.test = test
        self.seed = seed
        self.dataset = dataset_of(data)
        self.root = resolve_root(data.root)

    def setup(self, stage: str) -> None:
        """The datasets of `stage`, each made once (the runner sets up "fit" before Lightning does,
        to find a missing dataset before it makes the run folder)."""
        if stage == "fit" and getattr(self, "train_set", None) is None:
            # seeded per sample while training (SeededAugmentations)
            self.train_set = self.dataset(self.root, "train", build_pipeline(self.data.train_pipeline))
        if stage == "test":
            if getattr(self, "test_set", None) is None:
                self.test_set = self.dataset(self.root, "val",
                                             build_pipeline(self.test.pipeline or self.data.val_pipeline))
        elif getattr(self, "val_set", None) is None:
            self.val_set = self.dataset(self.root, "val", build_pipeline(self.data.val_pipeline))

    def _loader(self, dataset, batch_size: int, sampler, drop_last: bool, loader=DataLoader) -> DataLoader:
        workers = loader_workers(self.data.num_workers)
        # Each worker assembles whole batches; two in flight per worker keep a step's batch ready.
        made = loader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                      prefetch_factor=2 if workers > 0 else None, worker_init_fn=ignore_stop_signals)
        _loaders.add(made)
        return made

    def train_dataloader(self) -> DataLoader:
        sampler = ResumableSampler(self._train_sampler(), self.data.batch_size, self._trained_batches)
        return self._loader(SeededAugmentations(self.train_set), self.data.batch_size, sampler, drop_last=True,
                            loader=ResumableLoader)

    def _trained_batches(self) -> int:
        """Batches of the current epoch that went through a training step."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def _train_sampler(self):
        """This epoch's sampler: the coarse schedule's (the Trainer rebuilds the loader every epoch
        when it is on), else every sample once, shuffled, shared out under DDP. Either draws its
        order from (seed, epoch) alone, not from torch's global generator, so that a resumed run
        draws what it would have drawn (see ResumableSampler)."""
        world, rank = world_and_rank()
        if epochs_vary_in_length(self.data.coarse_schedule):
            fine, coarse = self.train_set.indices_by_annotation()
            return CoarseDecaySampler(fine, coarse, self.trainer.current_epoch, self.trainer.max_epochs, self.seed,
                                      world, rank, decay_epochs=self.data.coarse_decay_epochs)
        return DistributedSampler(self.train_set, num_replicas=world, rank=rank, shuffle=True, seed=self.seed,
                                  drop_last=True)

    def total_train_steps(self, accumulate: int) -> int:
        """Optimizer steps of the whole run, counted epoch by epoch from the train sampler: under
        the coarse schedule epochs differ in length, where Lightning's estimate (the first epoch's
        steps times the epochs) would be wrong."""
        sampler = self._train_sampler()
        if isinstance(sampler, CoarseDecaySampler):
            epoch_lengths = sampler.epoch_lengths()
        else:
            epoch_lengths = [len(sampler)] * self.trainer.max_epochs
        return optimizer_steps(epoch_lengths, self.data.batch_size, accumulate)

    def _scoring_loader(self, dataset, batch_size: int) -> DataLoader:
        # Each process scores its own share and the metric sums the confusion matrices, so no
        # image may be repeated to even out the shares (DistributedSampler would pad by repeating).
        sampler = UnrepeatedDistributedSampler(dataset, shuffle=False) if distributed() else SequentialSampler(dataset)
        return self._loader(dataset, batch_size, sampler, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        return self._scoring_loader(self.val_set, self.eval.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._scoring_loader(self.test_set, self.test.batch_size)


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_and_rank() -> tuple[int, int]:
    """(processes, this process's rank): (1, 0) outside DDP."""
    return (torch.distributed.get_world_size(), torch.distributed.get_rank()) if distributed() else (1, 0)
