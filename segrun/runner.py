"""From a Spec to a trained, validated run folder: the parts come from segrun.build, then
Lightning's Trainer fits and validates, and metrics.json records the result and its lineage."""
import os
import signal
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer

from segrun import build, lineage, quiet
from segrun.data.datamodule import ensure_dataset
from segrun.data.image_io import image_size
from segrun.data.transforms import oversized_crop
from segrun.errors import Stopped, UserError
from segrun.inference import describe_prediction
from segrun.metrics import format_iou_table
from segrun.models.weights import check_training_checkpoint
from segrun.resolve import check_devices, describe, resolve
from segrun.run_folder import (
    InitCheckpoint,
    RunFolder,
    init_checkpoint,
    planned_run_folder,
    run_folder_for,
    sole_writer,
)
from segrun.spec import Spec, spec_hash
from segrun.spec.loader import to_table
from segrun.stopping import Stop, StopOnSignal, TrainingStopped, requeue
from segrun.task import NonFiniteLoss


def train(spec: Spec, runs_dir: Path, force: bool = False, progress: bool = True,
          init: InitCheckpoint | None = None) -> RunFolder:
    """Train and validate the spec in its run folder, resuming an interrupted run; a finished
    run is left untouched (with `force`, a new folder is trained). `init`: the spec's
    init_checkpoint where the caller has found it already (a chain, to name the stage's folder).
    Everything that can fail before training (devices, weights, data) is tried before the run
    folder is made, so a run that never started leaves none."""
    quiet.install()
    check_devices(spec.trainer, f"spec {spec.name}")
    resolved = resolve(spec)
    print(describe(spec, resolved))
    spec = resolved
    init = init or init_checkpoint(spec)
    planned = planned_run_folder(spec, runs_dir, init)
    if planned.finished and not force:
        said = planned.set_unreadable_metrics_aside()  # a metrics.json that does not read: evaluated again
        if said is None:
            print(f"{planned.path} already holds this finished run (metrics.json); use --force to train it again "
                  "in a new folder")
            return planned
        print(said)
    task, datamodule = _ready_to_train(spec, init, progress)
    folder = run_folder_for(spec, runs_dir, init, force)
    with sole_writer(folder):
        if folder.finished and not force:  # finished by another start while this one was getting ready
            print(f"{folder.path} already holds this finished run (metrics.json)")
            return folder
        trainer = build.trainer(spec, folder, progress)
        train_seconds = _fit(trainer, task, datamodule, folder)
        best = trainer.checkpoint_callback.best_model_path or None
        if best is None:  # no validation ran while fitting (trainer.max_steps before the first, eval.every_n_epochs)
            best = str(folder.checkpoints / "last.ckpt")
            trainer.save_checkpoint(best)
            print(f"no validation ran while training ({trainer.global_step} steps); the final weights are validated, "
                  "saved as checkpoints/last.ckpt")
        validation_seconds, test = _evaluate(spec, trainer, task, datamodule, folder, best)
        if trainer.is_global_zero:
            _write_metrics(spec, folder, task, trainer, best, init, train_seconds, validation_seconds,
                           len(datamodule.val_set), test)
    return folder


def _ready_to_train(spec: Spec, init: InitCheckpoint | None, progress: bool):
    """The seeded task with its weights loaded and the datamodule set up for fitting, or the error
    of whatever is missing or broken (the dataset, a weights file), before a run folder is made."""
    ensure_dataset(spec.data, progress)
    pl.seed_everything(spec.seed, workers=True, verbose=False)
    task = build.task(spec, init=init)
    datamodule = build.datamodule(spec)
    datamodule.setup("fit")
    largest = largest_image(datamodule.train_set)
    oversized = oversized_crop(spec.data.train_pipeline, largest) if largest else None
    if oversized:
        print(f"segrun: warning: data.train_pipeline {oversized}; lower the crop, or use images of the size the "
              "spec is for", file=sys.stderr)
    return task, datamodule


def largest_image(dataset, sample: int = 100) -> tuple[int, int] | None:
    """The largest height and width among up to `sample` of the dataset's images, spread over it
    (read from their headers; one that does not read is left to the data checks of training)."""
    sizes = []
    for path in dataset.images[:: max(1, len(dataset.images) // sample)]:
        try:
            sizes.append(image_size(path))
        except OSError:
            continue
    return (max(h for h, _ in sizes), max(w for _, w in sizes)) if sizes else None


def _fit(trainer: pl.Trainer, task, datamodule, folder: RunFolder) -> float:
    """Fit from the newest checkpoint that loads; returns the training seconds of every attempt."""
    timer = next(callback for callback in trainer.callbacks if isinstance(callback, Timer))
    stopping = next(callback for callback in trainer.callbacks if isinstance(callback, StopOnSignal))
    resume = folder.resume_point(lambda path: check_training_checkpoint(task, path))
    if resume.describe(folder):
        print(resume.describe(folder))

    def interrupted() -> str:
        if stopping.written:
            return (f"{folder.path}: stopped at step {trainer.global_step} (epoch {trainer.current_epoch}); "
                    "checkpoints/interrupted.ckpt holds it; run the same command to resume")
        return f"{folder.path}: stopped; run the same command to resume from its last checkpoint"

    with build.ctrl_c_as_keyboard_interrupt(trainer, interrupted):
        try:
            trainer.fit(task, datamodule=datamodule, ckpt_path=resume.checkpoint)
        except NonFiniteLoss as error:
            raise UserError(f"{folder.path}: {error}") from None
        except TrainingStopped as stopped:
            _stopped(folder, stopped.stop, trainer.is_global_zero)
    # Read before validate(ckpt_path=best) restores the Timer's state from that checkpoint.
    return timer.time_elapsed("train")  # all attempts: the Timer's state is checkpointed


def _evaluate(spec: Spec, trainer: pl.Trainer, task, datamodule, folder: RunFolder, best: str) -> tuple[float, dict | None]:
    """Validate the best checkpoint, then score it with the [test] protocol if the spec has one:
    (validation seconds, the test scores as metrics.json holds them)."""
    with build.ctrl_c_as_keyboard_interrupt(trainer, lambda: f"{folder.path}: stopped in the evaluation after "
                                                             "training; run the same command to evaluate it"):
        try:
            started = time.monotonic()
            trainer.validate(task, datamodule=datamodule, ckpt_path=best, verbose=False)
            validation_seconds = time.monotonic() - started
            if spec.test is None:
                return validation_seconds, None
            started = time.monotonic()  # the reported numbers' protocol, on the same best checkpoint
            trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False)
            return validation_seconds, {
                **task.last_test_scores, "options": to_table(spec.test),
                "seconds_per_image": round((time.monotonic() - started) / max(len(datamodule.test_set), 1), 4)}
        except TrainingStopped as stopped:
            _stopped(folder, stopped.stop, trainer.is_global_zero, evaluating=True)


def _write_metrics(spec: Spec, folder: RunFolder, task, trainer: pl.Trainer, best: str, init, train_seconds: float,
                   validation_seconds: float, val_images: int, test: dict | None) -> None:
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    metrics = {
        **task.last_val_scores,
        "epoch": checkpoint["epoch"],
        "step": checkpoint["global_step"],
        "checkpoint": str(Path(best).resolve().relative_to(folder.path.resolve())),
        "trained_steps": trainer.global_step,
        "spec_hash": spec_hash(spec),
        "init": None if init is None else init.as_json(),
        "segrun_commit": lineage.segrun_commit(),
        "packages": lineage.package_versions(),
        "devices": lineage.device_names(),
        "train_seconds": round(train_seconds, 1),
        "validation_seconds_per_image": round(validation_seconds / max(val_images, 1), 4),
        "peak_gpu_memory_gb": lineage.peak_gpu_memory_gb(),
        "trainer": {"precision": spec.trainer.precision, "memory_format": spec.trainer.memory_format,
                    "compile": spec.trainer.compile},
        "test": test,
    }
    folder.write_metrics(metrics)
    print(f"\n{metrics['checkpoint']}, epoch {metrics['epoch']} (step {metrics['step']}):\n{format_iou_table(metrics)}")
    print(f"{folder.metrics_file}: mIoU {metrics['mIoU']:.4f} of {metrics['checkpoint']} "
          f"(epoch {metrics['epoch']}, step {metrics['step']}; {metrics['trained_steps']} steps trained)")
    if test is not None:
        print(f"\ntest protocol ({describe_prediction(spec.test)}):\n{format_iou_table(test)}")
        print(f"{folder.metrics_file}: test mIoU {test['mIoU']:.4f}")


def _stopped(folder: RunFolder, stop: Stop, global_zero: bool, evaluating: bool = False):
    """Training (or the evaluation after it) stopped on a signal (segrun.stopping): one line on the
    first process, the SLURM job requeued if a requeue signal asked for it, and the exit:
    KeyboardInterrupt for Ctrl-C (status 130), else Stopped with status 0 under SLURM, whose job
    state records the preemption, and 128 + the signal's number elsewhere, as a process killed by
    it would report."""
    if stop.saved:
        where = (f"stopped at step {stop.step} (epoch {stop.epoch}) on {stop.signal_name}; "
                 "checkpoints/interrupted.ckpt holds it")
    elif evaluating:
        where = f"stopped on {stop.signal_name} in the evaluation after training (training is complete)"
    else:
        where = f"stopped on {stop.signal_name} before training went on (nothing new to save)"
    requeue_failed = None
    if stop.requeue_job is not None and global_zero:
        try:
            requeue(stop.requeue_job)
        except (OSError, RuntimeError) as error:  # scontrol missing, or SLURM refusing
            requeue_failed = str(error)
    if requeue_failed is not None:
        then = f"requeueing it failed ({requeue_failed}); run the same command to resume"
    elif stop.requeue_job is not None:
        then = f"SLURM job {stop.requeue_job} is requeued and resumes from there"
    elif os.environ.get("SLURM_JOB_ID"):
        then = "a requeued SLURM job resumes by itself; otherwise run the same command to resume"
    else:
        then = "run the same command to resume"
    message = f"{folder.path}: {where}; {then}" if global_zero else ""
    if stop.signum == signal.SIGINT:
        raise KeyboardInterrupt(message) from None
    raise Stopped(message, 0 if os.environ.get("SLURM_JOB_ID") and requeue_failed is None else 128 + stop.signum) from None
