"""The study's strategy 1 for coarse data: one run on fine + coarse in which the share of coarse
samples per epoch falls linearly, from all of them in the first epoch to none in the last."""
import math

import torch


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


def epoch_batches(samples: int, batch_size: int, world_size: int) -> int:
    """Batches one process runs in an epoch of `samples` (shared out evenly, incomplete batches dropped)."""
    return samples // world_size // batch_size


def total_optimizer_steps(fine: int, coarse: int, epochs: int, batch_size: int, world_size: int, accumulate: int) -> int:
    return sum(math.ceil(epoch_batches(fine + coarse_count(e, epochs, coarse), batch_size, world_size) / accumulate)
               for e in range(epochs))
