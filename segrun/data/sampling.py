"""The study's strategy 1 for coarse data: one run on fine + coarse in which the share of coarse
samples per epoch falls linearly, from all of them in the first epoch to none at the end of the
decay (data.coarse_decay_epochs; the run's last epoch by default, the study's 360 of 400).
`CoarseDecaySampler` is the schedule: it draws each epoch's samples and knows every epoch's
length, so the run's optimizer steps are counted from it. `ResumableSampler` lets a run resumed
mid-epoch continue with the samples an uninterrupted run would have drawn."""
import itertools
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def epochs_vary_in_length(coarse_schedule: str) -> bool:
    """Whether data.coarse_schedule makes epochs differ in length: the train loader is then
    rebuilt every epoch (the Trainer's reload_dataloaders_every_n_epochs=1) from a CoarseDecaySampler."""
    return coarse_schedule == "linear_decay"


def coarse_share(epoch: int, decay_epochs: int) -> float:
    """Share of the coarse samples used in `epoch` (0-based): max(1 - epoch / (decay_epochs - 1), 0),
    the study's policy (its MAX_COARSE_EPOCH is decay_epochs): 1 in the first epoch, 0 from epoch
    decay_epochs - 1 on. A decay over one epoch keeps every coarse sample."""
    if decay_epochs <= 1:
        return 1.0
    return max(1 - epoch / (decay_epochs - 1), 0)


def coarse_count(epoch: int, decay_epochs: int, total: int) -> int:
    """Coarse samples used in `epoch` of a decay over `decay_epochs`: the share of `total`, rounded
    (the study truncates; the two differ by at most one sample)."""
    return round(total * coarse_share(epoch, decay_epochs))


def epoch_indices(fine: list[int], coarse: list[int], epoch: int, decay_epochs: int, seed: int) -> list[int]:
    """Every fine index plus a random subset of the coarse ones (coarse_count of them), shuffled;
    the same for the same (seed, epoch), so a resumed run sees the epochs it would have seen."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    count = coarse_count(epoch, decay_epochs, len(coarse))
    chosen = [coarse[i] for i in torch.randperm(len(coarse), generator=generator)[:count]]
    indices = fine + chosen
    return [indices[i] for i in torch.randperm(len(indices), generator=generator)]


def optimizer_steps(epoch_lengths: Iterable[int], batch_size: int, accumulate: int) -> int:
    """Optimizer steps of a run whose epochs give one process these many samples: incomplete
    batches are dropped, and an epoch's last, incomplete accumulation still steps."""
    return sum(math.ceil(length // batch_size / accumulate) for length in epoch_lengths)


class CoarseDecaySampler(Sampler[int]):
    """Epoch `epoch` of a run of `epochs`: every fine index plus coarse_count coarse ones for a decay
    over `decay_epochs` (default: `epochs`), shuffled (epoch_indices), and under DDP this process's
    equal share of them. The loader is rebuilt with a new sampler each epoch, since its length changes."""

    def __init__(self, fine: list[int], coarse: list[int], epoch: int, epochs: int, seed: int,
                 world_size: int = 1, rank: int = 0, decay_epochs: int | None = None):
        self.fine, self.coarse = fine, coarse
        self.epoch, self.epochs, self.seed = epoch, epochs, seed
        self.decay_epochs = epochs if decay_epochs is None else decay_epochs
        self.world_size, self.rank = world_size, rank

    def epoch_length(self, epoch: int) -> int:
        """Samples this process sees in `epoch`."""
        return (len(self.fine) + coarse_count(epoch, self.decay_epochs, len(self.coarse))) // self.world_size

    def epoch_lengths(self) -> list[int]:
        return [self.epoch_length(epoch) for epoch in range(self.epochs)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.epoch_length(self.epoch)

    def __iter__(self) -> Iterator[int]:
        indices = epoch_indices(self.fine, self.coarse, self.epoch, self.decay_epochs, self.seed)
        share = len(self)
        return iter(indices[self.rank * share:(self.rank + 1) * share])


def augmentation_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    """The augmentation seed of the sample at `position` of process `rank`'s share of `epoch`."""
    return int(np.random.SeedSequence([seed, epoch, rank, position]).generate_state(1)[0])


class ResumableSampler(Sampler[tuple[int, int]]):
    """A train sampler whose state a checkpoint keeps: the epoch, the batches of it this process has
    trained on (`trained_batches()`, read from the Trainer when the checkpoint is written) and the
    seed. `order` draws each epoch's samples from (seed, epoch) alone (a seeded DistributedSampler,
    a CoarseDecaySampler), and each sample comes with its augmentation seed (augmentation_seed, for
    SeededAugmentations), so after load_state_dict the next pass is that epoch's order without the
    samples already trained on, augmented alike: the batches an uninterrupted run would have seen."""

    def __init__(self, order, batch_size: int, trained_batches: Callable[[], int]):
        self.order = order
        self.batch_size = batch_size
        self.trained_batches = trained_batches
        self.skip = 0  # samples the next pass leaves out (a resumed epoch's trained ones)

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip, self.skip = self.skip, 0
        seed, epoch, rank = self.order.seed, self.order.epoch, self.order.rank
        return ((index, augmentation_seed(seed, epoch, rank, position))
                for position, index in itertools.islice(enumerate(self.order), skip, None))

    def state_dict(self) -> dict:
        return {"epoch": self.order.epoch, "batches": self.trained_batches(), "seed": self.order.seed}

    def load_state_dict(self, state: dict) -> None:
        self.order.seed = state["seed"]
        self.order.set_epoch(state["epoch"])
        if state["batches"] < len(self.order) // self.batch_size:  # stopped mid-epoch (else the next starts whole)
            self.skip = state["batches"] * self.batch_size
