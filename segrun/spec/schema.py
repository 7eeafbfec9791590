"""The experiment spec: one frozen attrs class per TOML section.

Every field has a type the loader enforces and, where values are bounded, a validator that
raises ValueError("expected ...") so the loader can name the key and the file. Defaults are
the values a run gets when a spec leaves a key out; the resolved spec written into a run
folder spells every one of them out.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import attrs
from attrs import field, frozen

# ---- validators: each raises ValueError("expected ...") -------------------------------------

def at_least(minimum):
    def check(_instance, _attribute, value):
        if value is not None and not value >= minimum:
            raise ValueError(f"expected a number >= {minimum}, got {value!r}")
    return check


def greater_than(minimum):
    def check(_instance, _attribute, value):
        if value is not None and not value > minimum:
            raise ValueError(f"expected a number > {minimum}, got {value!r}")
    return check


def in_range(low, high):
    """low <= value < high."""
    def check(_instance, _attribute, value):
        if not low <= value < high:
            raise ValueError(f"expected a number in [{low}, {high}), got {value!r}")
    return check


def optional_range(low, high, low_open: bool = False):
    """low <= value <= high (low < value with low_open); None passes."""
    def check(_instance, _attribute, value):
        if value is None:
            return
        if not (low < value <= high if low_open else low <= value <= high):
            raise ValueError(f"expected a number in {'(' if low_open else '['}{low}, {high}], got {value!r}")
    return check


def devices_value(_instance, _attribute, value):
    if value == "auto" or (isinstance(value, int) and (value >= 1 or value == -1)):
        return
    raise ValueError(f'expected "auto", -1 (all) or a positive number of devices, got {value!r}')


def workers_value(_instance, _attribute, value):
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return
    raise ValueError(f'expected "auto" or a number of workers >= 0, got {value!r}')


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


LONGEST_NAME = 200  # a run folder is <name>-<8 hex digits>[-N], and file systems allow 255 bytes a name


def run_name(_instance, _attribute, value):
    if len(value) > LONGEST_NAME:
        raise ValueError(f"expected at most {LONGEST_NAME} characters (it names the run folder, and file systems allow "
                         f"255), got {len(value):,} ({value[:24]!r}...)")
    if not RUN_NAME.fullmatch(value):
        raise ValueError(f"expected a name of letters, digits, '_', '.' and '-' (it names the run folder), got {value!r}")


def pair_of_positive(_instance, _attribute, value):
    if value is not None and any(not v > 0 for v in value):
        raise ValueError(f"expected positive values, got {list(value)}")


# ---- sections -------------------------------------------------------------------------------

@frozen
class TransformStep:
    """One albumentations transform: `name` is its class (e.g. "RandomCrop"), every other key of
    the TOML table is passed to it as a keyword argument."""

    name: str
    params: Mapping[str, Any] = field(factory=dict, converter=lambda p: MappingProxyType(dict(p)))


@frozen
class SyntheticData:
    """A synthetic dataset generated (and prepared) at data.root when that folder is missing."""

    train_images: int = field(default=80, validator=at_least(1))
    val_images: int = field(default=20, validator=at_least(1))
    height: int = field(default=128, validator=at_least(32))
    width: int = field(default=256, validator=at_least(32))
    seed: int = field(default=0, validator=at_least(0))


@frozen
class DataSpec:
    """Which dataset, where it lives, and how batches are made."""

    root: str  # dataset folder; a relative path is taken under $SEGRUN_DATA (default ./data)
    dataset: str = "cityscapes"  # a name in segrun.data.DATASETS
    batch_size: int = field(default=2, validator=at_least(1))  # per device
    # DataLoader workers per device; "auto": the CPU cores per device, at most 8 (segrun.data.datamodule)
    num_workers: int | Literal["auto"] = field(default="auto", validator=workers_value)
    train_pipeline: tuple[TransformStep, ...] = ()  # albumentations transforms, in order
    val_pipeline: tuple[TransformStep, ...] = ()
    synthetic: SyntheticData | None = None
    # "linear_decay": every epoch has all fine samples plus a random share of the coarse ones that
    # falls linearly from all (first epoch) to none (last); for datasets mixing both (cityscapes_fine_coarse)
    coarse_schedule: Literal["all", "linear_decay"] = "all"
    # linear_decay only: the share is max(1 - epoch / (coarse_decay_epochs - 1), 0), none from epoch
    # coarse_decay_epochs - 1 on (the study: 360 of 400 epochs); unset: trainer.epochs
    coarse_decay_epochs: int | None = field(default=None, validator=at_least(2))
    # dataset = "folder" only (a user's own data, segrun.data.image_folders): the image and label
    # folders under root, "{split}" standing for train or val; image and label paired by file stem
    images: str | None = None
    labels: str | None = None
    classes: tuple[str, ...] | None = None  # class names, in training-id order
    palette: tuple[tuple[int, int, int], ...] | None = None  # RGB of each class; unset: generated
    # the stored value of unlabelled pixels (0 to 65535: 8- or 16-bit label files); unset: 255
    ignore_index: int | None = field(default=None, validator=optional_range(0, 65535))
    label_values: tuple[int, ...] | None = None  # the stored value of each class; unset: 0 to N-1


@frozen
class ModelSpec:
    name: str = "hrnet"  # a name in segrun.models.MODELS
    backbone: str = "hrnet_w48"  # a name in segrun.models.BACKBONES
    align_corners: bool = True  # bilinear resizing of branches and logits, as the reference's ALIGN_CORNERS
    # backbone (and head) weights in the official HRNet, timm or NVIDIA key layout: a path; false
    # says the model starts from scratch (the study's MODEL.PRETRAINED=False), unset the same
    pretrained: str | Literal[False] | None = None
    # model names (dotted prefixes such as "ocr.aux_head") whose tensors are not taken from
    # `pretrained`, as the study leaves NVIDIA's Mapillary heads out
    pretrained_skip: tuple[str, ...] | None = None
    # the backbone's starting weights before any are loaded: unset or "timm", timm's HRNet init (He
    # normal); "pytorch", each layer's PyTorch default, as the study's from-scratch runs start
    backbone_init: Literal["timm", "pytorch"] | None = None
    # every other key of [model]: the model class's own keyword options (hrnet_ocr_ms's
    # mscale_training, say), checked against its signature by segrun.build
    options: Mapping[str, Any] = field(factory=dict, converter=lambda o: MappingProxyType(dict(o)))


@frozen
class LossSpec:
    """One loss, applied to one model output (the n-th [[loss]] table to the n-th output). Every key
    of the TOML table other than name, weight and class_weights is an option of that loss: a keyword
    argument of its class, checked against its signature when the spec is built (segrun.build)."""

    name: str = "ce"  # a name in segrun.losses.LOSSES
    weight: float = field(default=1.0, validator=at_least(0.0))
    # per-class weights: a list with one number per class, or a named set such as "cityscapes"
    class_weights: tuple[float, ...] | str | None = None
    options: Mapping[str, Any] = field(factory=dict, converter=lambda o: MappingProxyType(dict(o)))


@frozen
class OptimizerSpec:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = field(default=0.01, validator=greater_than(0.0))
    momentum: float = field(default=0.9, validator=in_range(0.0, 1.0))  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = field(default=5e-4, validator=at_least(0.0))
    betas: tuple[float, float] = field(default=(0.9, 0.999), validator=pair_of_positive)  # adamw only


@frozen
class ScheduleSpec:
    """Learning-rate schedule, stepped once per optimizer step."""

    name: Literal["poly", "constant"] = "poly"
    power: float = field(default=0.9, validator=greater_than(0.0))  # poly: lr * (1 - step/total) ** power
    warmup_steps: int = field(default=0, validator=at_least(0))  # linear warmup before the schedule
    warmup_start_factor: float = field(default=0.1, validator=greater_than(0.0))  # lr factor at step 0


@frozen
class TrainerSpec:
    """Passed through to Lightning's Trainer, but memory_format and compile, which segrun applies
    to the model and batches; "auto" values are resolved per machine (segrun.resolve)."""

    epochs: int = field(default=1, validator=at_least(1))
    max_steps: int = field(default=-1, validator=at_least(-1))  # -1: run all epochs
    # auto: bf16-mixed on CUDA GPUs with bf16 (16-mixed on older ones), 32 on the CPU.
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"] = "auto"
    # auto: channels_last on CUDA GPUs, contiguous on the CPU.
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    compile: bool = False  # torch.compile the model (nn.Module.compile: checkpoints keep their keys)
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "auto"
    devices: int | str = field(default="auto", validator=devices_value)
    num_nodes: int = field(default=1, validator=at_least(1))
    strategy: str = "auto"  # "auto" or a name in Lightning's StrategyRegistry
    sync_batchnorm: bool = False
    accumulate_grad_batches: int = field(default=1, validator=at_least(1))
    gradient_clip_val: float | None = field(default=None, validator=at_least(0.0))
    deterministic: bool = False
    detect_anomaly: bool = False  # autograd anomaly detection: finds the op that made a NaN, slowly
    log_every_n_steps: int = field(default=10, validator=at_least(1))


def positive_scales(_instance, _attribute, value):
    if not value or any(not 0 < s <= 8 for s in value):
        raise ValueError(f"expected a non-empty list of scales in (0, 8], got {list(value)}")


def optional_model_scales(_instance, _attribute, value):
    if value is not None:
        positive_scales(_instance, _attribute, value)
        if 1.0 not in value:
            raise ValueError(f"expected 1.0 among the scales (the attention fuses them into the 1.0 prediction), "
                             f"got {list(value)}")


@frozen
class PredictionSpec:
    """How predictions are made from a trained model, in validation ([eval]) and test ([test])."""

    scales: tuple[float, ...] = field(default=(1.0,), validator=positive_scales)  # image scales to predict at
    flip: bool = False  # also predict the left-right flipped image and average the two
    sliding: tuple[int, int] | None = field(default=None, validator=pair_of_positive)  # window [height, width]
    # how the scales are combined: the mean of their softmax probabilities, or the sum of their logits
    # (the study's testing); a flip pair is averaged first either way
    combine: Literal["mean_probabilities", "sum_logits"] = "mean_probabilities"
    # scale-fusing models (hrnet_ocr_ms) only: the scales their attention fuses inside each of the
    # outer `scales`; unset: the model's own forward (0.5x and 1.0x when trained that way)
    model_scales: tuple[float, ...] | None = field(default=None, validator=optional_model_scales)


@frozen
class EvalSpec(PredictionSpec):
    """Validation during training (it picks the best checkpoint; keep it cheap)."""

    every_n_epochs: int = field(default=1, validator=at_least(1))
    batch_size: int = field(default=1, validator=at_least(1))
    # validation images shown in TensorBoard at each validation (image | labels | prediction), the
    # same ones every time; 0: none (the confusion matrix and losses are logged either way)
    log_images: int = field(default=4, validator=at_least(0))


@frozen
class TestSpec(PredictionSpec):
    """The protocol of the reported numbers, run on the val split after training (into
    metrics.json's "test") and by `segrun eval`."""

    __test__ = False  # not a pytest test class, whatever its name
    batch_size: int = field(default=1, validator=at_least(1))
    # albumentations transforms of the test images; empty: data.val_pipeline
    pipeline: tuple[TransformStep, ...] = ()


@frozen
class Spec:
    """A whole experiment, after `extends` and overrides are resolved."""

    name: str = field(validator=run_name)
    data: DataSpec
    seed: int = field(default=0, validator=at_least(0))
    init: str | None = None  # start from this checkpoint (.ckpt) or run folder: every shape-matching tensor
    model: ModelSpec = field(factory=ModelSpec)
    loss: tuple[LossSpec, ...] = field(factory=lambda: (LossSpec(),))
    optimizer: OptimizerSpec = field(factory=OptimizerSpec)
    schedule: ScheduleSpec = field(factory=ScheduleSpec)
    trainer: TrainerSpec = field(factory=TrainerSpec)
    eval: EvalSpec = field(factory=EvalSpec)
    test: TestSpec | None = None  # no [test]: the reported numbers are the validation's


SECTIONS = (Spec, DataSpec, SyntheticData, ModelSpec, LossSpec, OptimizerSpec, ScheduleSpec, TrainerSpec, PredictionSpec,
            EvalSpec, TestSpec)
for _section in SECTIONS:
    attrs.resolve_types(_section)
