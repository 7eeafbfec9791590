"""The one place that turns spec objects into what runs: the checked spec, the model, its losses,
the task, the datamodule and the trainer. Commands, the runner and the benchmarks call these;
nothing else builds a model or a loss from spec fields.

Spec keys read here: data.dataset, model.*, loss.*, optimizer.*, schedule.*, trainer.*, eval.*,
init; the datamodule reads data.* and eval.* itself.
"""
import io
import signal
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import attrs
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, Timer
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.strategies import StrategyRegistry
from torch import nn

from segrun import models, spec
from segrun.atomic_write import write_atomically
from segrun.data import DATASETS, dataset_of
from segrun.data.image_folders import folder_problem
from segrun.data.preview import viewable_dataset
from segrun.data.sampling import epochs_vary_in_length
from segrun.errors import UserError, did_you_mean
from segrun.inference import predict
from segrun.losses import LOSSES, OptionError
from segrun.losses import create as create_loss
from segrun.models.weights import load_init, load_pretrained, skipped_by
from segrun.optim import optimization
from segrun.progress import ProgressBar
from segrun.resolve import resolved_memory_format
from segrun.run_folder import InitCheckpoint, RunFolder
from segrun.spec import KeyProblem, PredictionSpec, Spec
from segrun.step_seeds import StepSeeds
from segrun.stopping import StopOnSignal
from segrun.task import SegmentationTask
from segrun.validation_figures import ValidationFigures

# ---- the spec ----------------------------------------------------------------------------------

def _known(path, what: str, value, names) -> None:
    if value not in names:
        raise KeyProblem(path, f"unknown {what} {value!r}{did_you_mean(value, names)} (known: {', '.join(sorted(names))})")


def check_spec(loaded: Spec, pipelines: bool = True) -> None:
    """The checks that need the registries: names, one [[loss]] per model output, each loss's
    options and class weights, the augmentation pipelines (unless `pipelines` is false: for what
    never loads the data), dataset-specific keys. Raises KeyProblem."""
    _known(("data", "dataset"), "dataset", loaded.data.dataset, DATASETS)
    problem = folder_problem(loaded.data)
    if problem is not None:
        raise KeyProblem(("data", problem[0]), problem[1])
    _known(("model", "name"), "model", loaded.model.name, models.MODELS)
    problem = models.backbone_problem(loaded.model.name, loaded.model.backbone)
    if problem is not None:
        raise KeyProblem(("model", "backbone"), problem)
    _known(("trainer", "strategy"), "strategy", loaded.trainer.strategy, ["auto", *StrategyRegistry.available_strategies()])
    for index, loss in enumerate(loaded.loss):
        _known(("loss", index, "name"), "loss", loss.name, LOSSES)

    if loaded.model.pretrained_skip:
        if not loaded.model.pretrained:
            raise KeyProblem(("model", "pretrained_skip"), "leaves tensors of model.pretrained out, which is not set")
        with torch.device("meta"):  # names only
            names = list(model(loaded).state_dict())
        for index, prefix in enumerate(loaded.model.pretrained_skip):
            if not any(skipped_by(name, [prefix]) for name in names):
                prefixes = sorted({".".join(name.split(".")[:depth]) for name in names for depth in (1, 2, 3)})
                raise KeyProblem(("model", "pretrained_skip", index), f"no tensor of model {loaded.model.name} is "
                                 f"named {prefix!r} or under it{did_you_mean(prefix, prefixes)}")
    for key, value in loaded.model.options.items():
        problem = models.option_problem(loaded.model.name, key, value)
        if problem is not None:
            raise KeyProblem(("model", key), problem)
    for section in ("eval", "test"):
        options = getattr(loaded, section)
        if options is not None and options.model_scales is not None and not models.fuses_scales(loaded.model.name):
            raise KeyProblem((section, "model_scales"), f"model {loaded.model.name} does not fuse scales; only "
                             "hrnet_ocr_ms takes model_scales (use scales for multi-scale testing)")
    outputs = models.output_names(loaded.model)
    if len(loaded.loss) != len(outputs):
        raise KeyProblem(("loss",), f"{len(loaded.loss)} [[loss]] tables for the {len(outputs)} outputs of model "
                         f"{loaded.model.name} ({', '.join(outputs)}); give one [[loss]] per output, in that order")
    for index, loss_spec in enumerate(loaded.loss):
        try:
            _loss(loaded, loss_spec)
        except OptionError as error:
            raise KeyProblem(("loss", index, error.key), error.problem) from None

    if pipelines:
        _check_pipelines(loaded)
    dataset = dataset_of(loaded.data)
    if loaded.data.coarse_schedule != "all" and not getattr(dataset, "mixes_coarse", False):
        raise KeyProblem(("data", "coarse_schedule"), f"dataset {loaded.data.dataset} does not mix fine and coarse "
                         "samples; use cityscapes_fine_coarse")
    if loaded.data.coarse_decay_epochs is not None and not epochs_vary_in_length(loaded.data.coarse_schedule):
        raise KeyProblem(("data", "coarse_decay_epochs"), 'only data.coarse_schedule = "linear_decay" decays the '
                         "coarse share; set it, or remove coarse_decay_epochs")
    if loaded.data.synthetic is not None and not hasattr(dataset, "synthesize"):
        raise KeyProblem(("data", "synthetic"), f"dataset {loaded.data.dataset} has no synthetic generator; "
                         "remove [data.synthetic]")


def _check_pipelines(loaded: Spec) -> None:
    # albumentations is imported only where pipelines are built, so the model, loss and op
    # benchmarks run where it is missing (a GPU machine's image)
    from segrun.data.transforms import PipelineError, build_pipeline

    pipelines = {("data", "train_pipeline"): loaded.data.train_pipeline, ("data", "val_pipeline"): loaded.data.val_pipeline}
    if loaded.test is not None:
        pipelines["test", "pipeline"] = loaded.test.pipeline
    for path, steps in pipelines.items():
        try:
            build_pipeline(steps)
        except PipelineError as error:
            raise KeyProblem((*path, error.index, error.key), error.problem) from None


def load_spec(path, overrides=(), pipelines: bool = True) -> Spec:
    """A spec file with its extends and KEY=VALUE overrides, fully checked (SpecError otherwise);
    without `pipelines`, its augmentation pipelines are not built (see check_spec)."""
    return spec.load(path, overrides, check=partial(check_spec, pipelines=pipelines))


def read_spec(text: str, source: str = "<spec>") -> Spec:
    """A resolved spec's TOML text (a run folder's spec.toml), fully checked."""
    return spec.loads(text, source, check=check_spec)


def read_run_spec(folder: RunFolder) -> Spec:
    return read_spec(folder.spec_file.read_text(), str(folder.spec_file))


def reported_protocol(loaded: Spec, options: dict, what: str) -> tuple[Spec, str]:
    """(the spec, "test" or "eval"): its [test] where it has one, else its [eval], with `options`
    replacing their fields and the spec checked again; a bad option is a UserError led by `what`."""
    protocol = "test" if loaded.test is not None else "eval"
    try:
        changed = attrs.evolve(loaded, **{protocol: attrs.evolve(getattr(loaded, protocol), **options)})
        check_spec(changed)
    except (TypeError, ValueError) as error:
        raise UserError(f"{what}: {error}") from None
    except KeyProblem as error:
        raise UserError(f"{what}: {error.problem}") from None
    return changed, protocol


# ---- the model and its losses --------------------------------------------------------------------

def model(loaded: Spec) -> nn.Module:
    """The spec's model with freshly initialised weights (build it under torch.device("meta") for
    shapes only): the backbone as model.backbone_init says."""
    network = models.create(loaded.model.name, dataset_of(loaded.data).num_classes,
                            **models.model_params(loaded.model))
    if loaded.model.backbone_init == "pytorch":
        models.reset_to_pytorch_defaults(network.backbone)
    return network


def _loss(loaded: Spec, loss_spec) -> nn.Module:
    dataset = dataset_of(loaded.data)
    return create_loss(loss_spec.name, dataset.num_classes, dataset.ignore_index, loss_spec.class_weights,
                       **loss_spec.options)


def losses(loaded: Spec) -> list[nn.Module]:
    """One loss per model output, in output order."""
    return [_loss(loaded, loss_spec) for loss_spec in loaded.loss]


def parameter_count(loaded: Spec) -> int:
    with torch.device("meta"):  # shapes only: nothing is allocated
        return sum(p.numel() for p in model(loaded).parameters())


# ---- Lightning -----------------------------------------------------------------------------------

def predictor(options: PredictionSpec):
    """predict(model, images) -> class scores, with the scales, flip, windows and combination of
    `options` (a spec's [eval] or [test])."""
    return partial(predict, scales=options.scales, flip=options.flip, window=options.sliding, combine=options.combine,
                   model_scales=options.model_scales)


def predicts_by_forward(options: PredictionSpec) -> bool:
    """Whether predictor(options) gives the classes of the model's first output (its softmax, or with
    combine "sum_logits" the logits themselves): one scale, no flip, no windows, the model's forward."""
    return (tuple(options.scales) == (1.0,) and not options.flip and options.sliding is None
            and options.model_scales is None)


def task(loaded: Spec, load_weights: bool = True, init: InitCheckpoint | None = None) -> SegmentationTask:
    """The task of a spec; with load_weights, the model starts from model.pretrained, and from
    `init` (the spec's run_folder.init_checkpoint, resolved once by the caller) when given. The
    model is in the trainer's memory format (and compiled if asked)."""
    network = model(loaded)
    if load_weights and loaded.model.pretrained:
        print(load_pretrained(network, Path(loaded.model.pretrained), loaded.model.pretrained_skip or ()))
    if load_weights and init is not None:
        print(load_init(network, init.path))
    channels_last = resolved_memory_format(loaded.trainer) == "channels_last"
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    if loaded.trainer.compile:
        network.compile()
    dataset = dataset_of(loaded.data)
    return SegmentationTask(network, losses=losses(loaded), loss_weights=[loss.weight for loss in loaded.loss],
                            output_names=models.output_names(loaded.model), num_classes=dataset.num_classes,
                            class_names=dataset.class_names, ignore_index=dataset.ignore_index,
                            configure_optimization=optimization(loaded.optimizer, loaded.schedule),
                            predict=predictor(loaded.eval),
                            predict_is_forward=predicts_by_forward(loaded.eval), channels_last=channels_last,
                            test_predict=None if loaded.test is None else predictor(loaded.test))


def datamodule(loaded: Spec):
    """The spec's SegmentationDataModule (imported here: it needs albumentations, see _check_pipelines)."""
    from segrun.data.datamodule import SegmentationDataModule

    return SegmentationDataModule(loaded.data, loaded.eval, loaded.seed, loaded.test)


class RunFolderCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, its saved state naming its files relative to its folder. With
    the absolute paths Lightning saves, a run folder moved or copied elsewhere resumes without its
    best score (every next validation becomes "best") and, on the next best, removes the file the
    state names, in the folder the run came from. Checkpoints of earlier versions (absolute paths)
    are taken relative to the folder they name."""

    def state_dict(self) -> dict:
        state = super().state_dict()
        here = Path(self.dirpath)

        def relative(path):
            if not path:
                return path
            try:
                return str(Path(path).relative_to(here))
            except ValueError:  # not one of this folder's files: kept as it is
                return path

        return {**state, "dirpath": ".", "best_model_path": relative(state["best_model_path"]),
                "kth_best_model_path": relative(state["kth_best_model_path"]),
                "last_model_path": relative(state["last_model_path"]),
                "best_k_models": {relative(path): score for path, score in state["best_k_models"].items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        saved_in, here = state_dict.get("dirpath"), Path(self.dirpath)

        def here_too(path):
            if not path:
                return path
            path = Path(path)
            if not path.is_absolute():
                return str(here / path)
            if saved_in not in (None, "."):
                try:
                    return str(here / path.relative_to(saved_in))
                except ValueError:
                    pass
            return str(path)

        super().load_state_dict({
            **state_dict, "dirpath": self.dirpath, "best_model_path": here_too(state_dict["best_model_path"]),
            "kth_best_model_path": here_too(state_dict.get("kth_best_model_path", "")),
            "last_model_path": here_too(state_dict.get("last_model_path", "")),
            "best_k_models": {here_too(path): score for path, score in state_dict.get("best_k_models", {}).items()}})


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


@contextmanager
def ctrl_c_as_keyboard_interrupt(trainer: pl.Trainer, message: Callable[[], str]):
    """Lightning answers a KeyboardInterrupt (Ctrl-C outside training, a second Ctrl-C inside it:
    see segrun.stopping) by running its exception callbacks, then sys.exit(1); here that becomes
    KeyboardInterrupt(message()), which the CLI prints as one line with exit status 130, as shells
    and schedulers expect of Ctrl-C. Lightning's ignoring of further Ctrl-C during its shutdown
    ends here too."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    except SystemExit:
        if not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, handler)
        raise KeyboardInterrupt(message()) from None


def trainer(loaded: Spec, folder: RunFolder, progress: bool = True, callbacks=()) -> pl.Trainer:
    """The training Trainer: best and last checkpoints, stopping at a step boundary on a signal (and
    a checkpoint on interruption), per-step seeds, TensorBoard (with the validation figures) and CSV
    logs in the run folder, and any extra `callbacks`. Under SLURM, Lightning's own requeue handling
    (hpc_ckpt_*.ckpt, written whenever the signal arrives) is off: StopOnSignal does it at a step
    boundary."""
    t = loaded.trainer
    callbacks = [
        *callbacks,
        ValidationFigures(loaded.eval.log_images, partial(viewable_dataset, loaded.data, "val"),
                          attention_scales=loaded.eval.model_scales),
        RunFolderCheckpoint(dirpath=folder.checkpoints, filename="best-epoch={epoch:03d}", auto_insert_metric_name=False,
                        monitor="val/mIoU", mode="max", save_top_k=1),
        # Its own callback: Lightning's save_last only rewrites last.ckpt when the best one changes.
        RunFolderCheckpoint(dirpath=folder.checkpoints, filename="last", every_n_epochs=1, save_top_k=1,
                        enable_version_counter=False),
        StopOnSignal(folder.checkpoints / "interrupted.ckpt"),
        StepSeeds(loaded.seed),
        Timer(),
        LearningRateMonitor(logging_interval="step"),
        *([ProgressBar()] if progress else []),
    ]
    loggers = [TensorBoardLogger(folder.logs, name="tensorboard"), CSVLogger(folder.logs, name="csv")]
    return pl.Trainer(
        default_root_dir=folder.path, max_epochs=t.epochs, max_steps=t.max_steps, precision=t.precision,
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        sync_batchnorm=t.sync_batchnorm, accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val, deterministic=t.deterministic, log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=loaded.eval.every_n_epochs, callbacks=callbacks, logger=loggers,
        enable_progress_bar=progress, enable_model_summary=False, use_distributed_sampler=False,
        reload_dataloaders_every_n_epochs=1 if epochs_vary_in_length(loaded.data.coarse_schedule) else 0,
        detect_anomaly=t.detect_anomaly,
        plugins=[AtomicCheckpointIO(), *([SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else [])],
    )
