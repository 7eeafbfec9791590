"""One way for training to stop early, whatever asks: Ctrl-C (SIGINT), a scheduler's SIGTERM
(SLURM preemption, `scontrol requeue`, a time limit) or a requeue signal (SIGUSR1 as in
`#SBATCH --signal=USR1@90`, SIGUSR2 as submitit sends). A signal only records the request; the
run stops at the next step boundary, where the weights, BatchNorm statistics, optimizer,
schedule and sampler position all belong to the same finished step, writes interrupted.ckpt of
that state, and raises TrainingStopped. Resuming from it ends bit-identical to a run never
interrupted. Lightning's own SIGTERM and SLURM requeue handlers are replaced while training runs
(see build.trainer), so no checkpoint is ever written from the middle of a step.

Step boundaries: before each training step; before each validation batch while fitting (the
checkpoint then says "validate this epoch again", see _validate_again_on_resume). In the sanity
check before training and in the validation and test after it, the run stops before the next
batch and saves nothing. Under DDP the ranks agree on the step to stop at over a small gloo group,
so they stop together."""
import os
import signal
import subprocess
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from attrs import frozen
from pytorch_lightning.trainer.states import TrainerFn

from segrun.atomic_write import DiskFull

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)  # "save and requeue yourself" under SLURM


@frozen
class Stop:
    """Where training stopped and why: the signal, the step and epoch, whether interrupted.ckpt holds
    them, and the SLURM job to requeue (None: not under SLURM, or not a requeue signal)."""
    signum: int
    step: int
    epoch: int
    saved: bool  # whether interrupted.ckpt holds this step (not when stopped before training resumed)
    requeue_job: str | None = None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class TrainingStopped(Exception):
    """Training stopped at a step boundary on a signal; checkpoints/interrupted.ckpt holds that state."""

    def __init__(self, stop: Stop):
        super().__init__(f"stopped at step {stop.step} (epoch {stop.epoch}) on {stop.signal_name}")
        self.stop = stop


def slurm_job_id() -> str | None:
    """The job `scontrol requeue` takes: an array task as <array job>_<task>, else the job; None
    outside SLURM."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def requeue(job: str) -> None:
    """Ask SLURM to requeue `job`: it starts again from its script, and the run resumes. SLURM then
    sends SIGTERM to the job's processes, which this process, stopping anyway, ignores."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"scontrol requeue {job} failed: {result.stderr.strip() or result.returncode}")


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker_init_fn: workers leave stopping to the training process. A scheduler
    signals every process of the job, and a worker killed by SIGTERM (or stopped by Ctrl-C) makes
    the training process fail mid-step with 'DataLoader worker ... is killed by signal'; the
    training process shuts its workers down itself when it stops."""
    from lightning_fabric.utilities.seed import pl_worker_init_function

    pl_worker_init_function(worker_id)  # Lightning's seeding of workers (seed_everything(workers=True)), kept
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class StopOnSignal(pl.Callback):
    """Turns the stop signals into a stop at the next step boundary (see the module docstring), and
    writes interrupted.ckpt when training fails on an error at a boundary or during validation (a
    bad data file, say); an error in the middle of a step writes nothing, as the weights may hold
    half of it: the run then resumes from its last checkpoint. A second Ctrl-C stops at once,
    writing nothing."""

    def __init__(self, path: Path):
        self.path = Path(path)  # checkpoints/interrupted.ckpt
        self.requested: int | None = None  # the first stop signal received, not yet acted on
        self.stop: Stop | None = None  # set when training stopped on a signal
        self.written = False  # whether this process wrote self.path
        self._phase = "outside"  # "between" steps, in a training "step", in "validation", or "outside" training
        self._writing = False
        self._group = None  # a gloo group under DDP, on which the ranks agree to stop
        self._evaluation_batches_everywhere = 0  # validation or test batches every rank runs (the agreed checks)

    # ---- signals --------------------------------------------------------------------------------

    def _record(self, signum: int, frame) -> None:
        if signum == signal.SIGINT and self.requested is not None:
            raise KeyboardInterrupt  # Ctrl-C after a stop was asked for: now, without a checkpoint
        self.requested = self.requested or signum

    def _install(self) -> None:
        # After Lightning registered its own handlers (Trainer._run, after on_fit_start); Lightning
        # restores the handlers it found when training ends.
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._record)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and dist.is_available() and dist.is_initialized() and self._group is None:
            self._group = dist.new_group(backend="gloo")  # CPU tensors: agreeing costs no device synchronisation

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install()
        self._phase = "between"

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._phase = "outside"

    def _agreed(self) -> int:
        """The signal to stop on, 0 for none; under DDP the highest any rank received, so all stop."""
        if self._group is None:
            return self.requested or 0
        flag = torch.tensor([self.requested or 0], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return int(flag)

    # ---- the boundaries -------------------------------------------------------------------------

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        signum = self._agreed()
        if signum:
            self._stop_here(trainer, signum)
        self._phase = "step"

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        self._phase = "between"

    def _fitting(self, trainer: pl.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def _evaluation_starts(self, trainer: pl.Trainer, batches) -> None:
        self._install()  # also for the validate and test that follow training
        if self._fitting(trainer):
            self._phase = "validation"
        # Ranks may hold one batch more or less than each other: they agree only over the batches
        # every rank runs, so that each check is one collective on every rank.
        everywhere = torch.tensor([int(sum(batches))], dtype=torch.int64)
        if self._group is not None:
            dist.all_reduce(everywhere, op=dist.ReduceOp.MIN, group=self._group)
        self._evaluation_batches_everywhere = int(everywhere)

    def _evaluation_batch_starts(self, trainer: pl.Trainer, batch_idx: int) -> None:
        if batch_idx < self._evaluation_batches_everywhere:
            signum = self._agreed()
            if signum:  # a checkpoint only while fitting: before it, nothing new; after it, nothing to save
                self._stop_here(trainer, signum, save=self._fitting(trainer))

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluation_starts(trainer, trainer.num_sanity_val_batches if trainer.sanity_checking
                                else trainer.num_val_batches)

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._evaluation_batch_starts(trainer, batch_idx)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitting(trainer):
            self._phase = "between"

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluation_starts(trainer, trainer.num_test_batches)

    def on_test_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._evaluation_batch_starts(trainer, batch_idx)

    # ---- stopping and the checkpoint ------------------------------------------------------------

    def _write(self, trainer: pl.Trainer) -> None:
        self._writing = True
        try:
            trainer.save_checkpoint(self.path)
        finally:
            self._writing = False
        self.written = True

    def _stop_here(self, trainer: pl.Trainer, signum: int, save: bool = True) -> None:
        if save:
            self._write(trainer)
        job = slurm_job_id() if signum in REQUEUE_SIGNALS else None
        self.stop = Stop(signum, trainer.global_step, trainer.current_epoch, save, job)
        raise TrainingStopped(self.stop)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self._writing and self._phase == "validation":
            _validate_again_on_resume(checkpoint)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        from segrun.task import NonFiniteLoss  # (the task imports nothing of this module)

        # After a non-finite loss the weights took a step without gradients: last.ckpt is the good state.
        # A full disk has no room for another checkpoint: the last one written stays whole. A second
        # Ctrl-C asks to stop at once. Under DDP an error is one rank's: writing a checkpoint waits for
        # every rank (a barrier), which the others, in their next step, would never reach.
        if isinstance(exception, (TrainingStopped, NonFiniteLoss, DiskFull, KeyboardInterrupt)) or \
                self._phase in ("outside", "step") or self._group is not None:
            return
        self._write(trainer)


def _validate_again_on_resume(checkpoint: dict) -> None:
    """Mark a checkpoint written during validation as written inside the first validation batch, so
    that Lightning, resuming, runs that validation again from its first batch (its "restarted mid
    evaluation" case: it then fetches as many batches as the counts say are left) instead of taking
    it as done. The metric state of a validation cut short is not in the checkpoint, so it must run
    whole."""
    progress = checkpoint["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
    for counts in (progress["total"], progress["current"]):
        counts.update(ready=1, started=1, processed=0, completed=0)
