"""Each training step's random draws (OCR's dropout, any model's) come from the run's seed, the
epoch, the step's place in it and the process's rank, not from whatever torch's generator drew
before: a checkpoint does not hold the generator's state, so a run resumed mid-epoch would
otherwise draw other dropout masks than the run it continues."""
import numpy as np
import pytorch_lightning as pl
import torch


STEP_STREAM = 1  # tells these seeds' SeedSequence from the augmentations'


def step_seed(seed: int, epoch: int, batch_index: int, rank: int) -> int:
    # (sampling.augmentation_seed draws from [seed, epoch, rank, position]: the last element, one
    # longer, keeps the two streams apart)
    return int(np.random.SeedSequence([seed, epoch, rank, batch_index, STEP_STREAM]).generate_state(1)[0])


class StepSeeds(pl.Callback):
    """Seeds torch (CPU and CUDA) before each training step with step_seed."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        torch.manual_seed(step_seed(self.seed, trainer.current_epoch, batch_idx, trainer.global_rank))
