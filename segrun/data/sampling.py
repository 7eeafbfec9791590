"""The study's strategy 1 for coarse data: one run on fine + coarse in which the share of coarse
samples per epoch falls linearly, from all of them in the first epoch to none in the last.
`CoarseDecaySampler` is the schedule: it draws each epoch's samples and knows every epoch's
length, so the run's optimizer steps are counted from it."""
import math
from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import Sampler


def epochs_vary_in_length(coarse_schedule: str) -> bool:
    """Whether data.coarse_schedule makes epochs differ in length: the train loader is then
    rebuilt every epoch (the Trainer's reload_dataloaders_every_n_epochs=1) from a CoarseDecaySampler."""
    return coarse_schedule == "linear_decay"


def coarse_count(epoch: int, epochs: int, total: int) -> int:
    """Coarse samples used in `epoch` (0-based) of `epochs`: total, falling linearly to 0."""
    if epochs <= 1:
        return total
    return round(total * (1 - min(epoch, epochs - 1) / (epochs - 1)))


def epoch_indices(fine: list[int], coarse: list[int], epoch: int, epochs: int, seed: int) -> list[int]:
    """Every fine index plus a random subset of the coarse ones (coarse_count of them), shuffled;
    the same for the same (seed, epoch), so a resumed run sees the epochs it would have seen."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    chosen = [coarse[i] for i in torch.randperm(len(coarse), generator=generator)[: coarse_count(epoch, epochs, len(coarse))]]
    indices = fine + chosen
    return [indices[i] for i in torch.randperm(len(indices), generator=generator)]


def optimizer_steps(epoch_lengths: Iterable[int], batch_size: int, accumulate: int) -> int:
    """Optimizer steps of a run whose epochs give one process these many samples: incomplete
    batches are dropped, and an epoch's last, incomplete accumulation still steps."""
    return sum(math.ceil(length // batch_size / accumulate) for length in epoch_lengths)


class CoarseDecaySampler(Sampler[int]):
    """Epoch `epoch` of the schedule: every fine index plus coarse_count coarse ones, shuffled
    (epoch_indices), and under DDP this process's equal share of them. The loader is rebuilt with
    a new sampler each epoch, since its length changes."""

    def __init__(self, fine: list[int], coarse: list[int], epoch: int, epochs: int, seed: int,
                 world_size: int = 1, rank: int = 0):
        self.fine, self.coarse = fine, coarse
        self.epoch, self.epochs, self.seed = epoch, epochs, seed
        self.world_size, self.rank = world_size, rank

    def epoch_length(self, epoch: int) -> int:
        """Samples this process sees in `epoch`."""
        return (len(self.fine) + coarse_count(epoch, self.epochs, len(self.coarse))) // self.world_size

    def epoch_lengths(self) -> list[int]:
        return [self.epoch_length(epoch) for epoch in range(self.epochs)]

    def __len__(self) -> int:
        return self.epoch_length(self.epoch)

    def __iter__(self) -> Iterator[int]:
        indices = epoch_indices(self.fine, self.coarse, self.epoch, self.epochs, self.seed)
        share = len(self)
        return iter(indices[self.rank * share:(self.rank + 1) * share])
