"""From a Spec to a trained, evaluated run: builders for each part, then Lightning's Trainer."""
import io
import time
import warnings
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, OnExceptionCheckpoint, Timer
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.plugins import TorchCheckpointIO

from segrun import lineage, losses, models
from segrun.atomic_write import write_atomically
from segrun.data import DATASETS
from segrun.data.datamodule import SegmentationDataModule, ensure_dataset
from segrun.data.sampling import epochs_vary_in_length
from segrun.errors import UserError
from segrun.inference import predict
from segrun.metrics import format_iou_table
from segrun.models.weights import load_init, load_pretrained
from segrun.optim import optimization
from segrun.resolve import describe, resolve, resolved_memory_format
from segrun.run_folder import InitCheckpoint, RunFolder, init_checkpoint, run_folder_for
from segrun.spec import Spec, spec_hash
from segrun.task import NonFiniteLoss, SegmentationTask


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: each checkpoint is written beside its final name
    and renamed over it, so a crash or a full disk mid-write leaves the previous checkpoint whole.
    (Lightning's own writer stages in the system's temporary folder and copies the file over when
    that folder is on another disk, which can leave a truncated checkpoint.)"""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        serialized = io.BytesIO()  # in memory first, as Lightning's own writer does
        torch.save(checkpoint, serialized)
        write_atomically(Path(path), serialized.getvalue())


def build_task(spec: Spec, load_weights: bool = True, init: InitCheckpoint | None = None) -> SegmentationTask:
    """The task of a spec; with load_weights, the model starts from model.pretrained, and from
    `init` (the spec's init_checkpoint) when given. The model is in the trainer's memory format
    (and compiled if asked)."""
    dataset = DATASETS[spec.data.dataset]
    model = models.create(spec.model.name, dataset.num_classes, **models.model_params(spec.model))
    if load_weights and spec.model.pretrained is not None:
        print(load_pretrained(model, Path(spec.model.pretrained)))
    if load_weights and init is not None:
        print(load_init(model, init.path))
    channels_last = resolved_memory_format(spec.trainer) == "channels_last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if spec.trainer.compile:
        model.compile()
    criteria = [losses.create(loss.name, dataset.num_classes, dataset.ignore_index, loss.class_weights,
                              **losses.loss_options(loss)) for loss in spec.loss]
    return SegmentationTask(model, criteria, [loss.weight for loss in spec.loss], dataset.num_classes,
                            dataset.class_names, dataset.ignore_index, optimization(spec.optimizer, spec.schedule),
                            partial(predict, scales=spec.eval.scales, flip=spec.eval.flip, window=spec.eval.sliding),
                            channels_last=channels_last)


def build_trainer(spec: Spec, folder: RunFolder, progress: bool = True) -> pl.Trainer:
    t = spec.trainer
    callbacks = [
        ModelCheckpoint(dirpath=folder.checkpoints, filename="best-epoch={epoch:03d}", auto_insert_metric_name=False,
                        monitor="val/mIoU", mode="max", save_top_k=1),
        # Its own callback: Lightning's save_last only rewrites last.ckpt when the best one changes.
        ModelCheckpoint(dirpath=folder.checkpoints, filename="last", every_n_epochs=1, save_top_k=1,
                        enable_version_counter=False),
        OnExceptionCheckpoint(dirpath=folder.checkpoints, filename="interrupted"),
        Timer(),
        LearningRateMonitor(logging_interval="step"),
    ]
    loggers = [TensorBoardLogger(folder.logs, name="tensorboard"), CSVLogger(folder.logs, name="csv")]
    return pl.Trainer(
        default_root_dir=folder.path, max_epochs=t.epochs, max_steps=t.max_steps, precision=t.precision,
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        sync_batchnorm=t.sync_batchnorm, accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val, deterministic=t.deterministic, log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=spec.eval.every_n_epochs, callbacks=callbacks, logger=loggers,
        enable_progress_bar=progress, enable_model_summary=False, use_distributed_sampler=False,
        reload_dataloaders_every_n_epochs=1 if epochs_vary_in_length(spec.data.coarse_schedule) else 0,
        detect_anomaly=t.detect_anomaly, plugins=[AtomicCheckpointIO()],
    )


def train(spec: Spec, runs_dir: Path, force: bool = False, progress: bool = True,
          init: InitCheckpoint | None = None) -> RunFolder:
    """Train and validate the spec in its run folder, resuming an interrupted run; a finished
    run is left untouched (with `force`, a new folder is trained). `init`: the spec's
    init_checkpoint where the caller has found it already (a chain, to name the stage's folder)."""
    resolved = resolve(spec)
    print(describe(spec, resolved))
    spec = resolved
    init = init or init_checkpoint(spec)
    folder = run_folder_for(spec, runs_dir, init, force)
    if folder.finished:
        print(f"{folder.path} already holds this finished run (metrics.json); use --force to train it again in a new folder")
        return folder
    ensure_dataset(spec.data, progress)
    pl.seed_everything(spec.seed, workers=True, verbose=False)
    task = build_task(spec, init=init)
    datamodule = SegmentationDataModule(spec.data, spec.eval, spec.seed)
    trainer = build_trainer(spec, folder, progress)
    timer = next(callback for callback in trainer.callbacks if isinstance(callback, Timer))
    resume = folder.resume_checkpoint()
    if resume is not None:
        print(f"resuming {folder.path} from {resume.name}")
    with warnings.catch_warnings():
        # "last" resumes from the newer of last.ckpt and interrupted.ckpt; a fresh run has neither.
        warnings.filterwarnings("ignore", message=r".*there is no last checkpoint available")
        try:
            trainer.fit(task, datamodule=datamodule, ckpt_path="last")
        except NonFiniteLoss as error:
            raise UserError(f"{folder.path}: {error}") from None
    # Read before validate(ckpt_path=best) restores the Timer's state from that checkpoint.
    train_seconds = timer.time_elapsed("train")  # all attempts: the Timer's state is checkpointed
    best = trainer.checkpoint_callback.best_model_path or None
    validation_started = time.monotonic()
    trainer.validate(task, datamodule=datamodule, ckpt_path=best, verbose=False)
    validation_seconds = time.monotonic() - validation_started
    if trainer.is_global_zero:
        checkpoint = torch.load(best, map_location="cpu", weights_only=True) if best else None
        metrics = {
            **task.last_val_scores,
            "epoch": checkpoint["epoch"] if checkpoint else trainer.current_epoch,
            "step": checkpoint["global_step"] if checkpoint else trainer.global_step,
            "checkpoint": str(Path(best).resolve().relative_to(folder.path.resolve())) if best else None,
            "spec_hash": spec_hash(spec),
            "init": None if init is None else init.as_json(),
            "segrun_commit": lineage.segrun_commit(),
            "packages": lineage.package_versions(),
            "devices": lineage.device_names(),
            "train_seconds": round(train_seconds, 1),
            "validation_seconds_per_image": round(validation_seconds / max(len(datamodule.val_set), 1), 4),
            "peak_gpu_memory_gb": lineage.peak_gpu_memory_gb(),
            "trainer": {"precision": spec.trainer.precision, "memory_format": spec.trainer.memory_format,
                        "compile": spec.trainer.compile},
        }
        folder.write_metrics(metrics)
        print(f"\nbest checkpoint, epoch {metrics['epoch']} (step {metrics['step']}):\n{format_iou_table(metrics)}")
        print(f"{folder.metrics_file}: mIoU {metrics['mIoU']:.4f} of {metrics['checkpoint'] or 'the final weights'} "
              f"(epoch {metrics['epoch']}, step {metrics['step']})")
    return folder
