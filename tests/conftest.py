import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parent / "reference"  # copied in; see its README

# The suite builds segrun's CUDA kernels wherever nvcc is, GPU or not (segrun itself builds them only
# where a GPU is): a kernel that does not compile fails the suite (tests/test_kernels.py).
os.environ.setdefault("SEGRUN_BUILD_CUDA", "1")


# The study's models; the registry's others are segmentation_models_pytorch's architectures.
STUDY_MODELS = ("hrnet", "hrnet_ocr", "hrnet_ocr_aspp", "hrnet_ocr_ms")


# Both implementations of segrun.ops, for tests that hold an op to a formula: "torch" (the PyTorch
# specification) and "ext" (the compiled library; SEGRUN_OPS=ext fails where it cannot load).
OPS_MODES = ["torch", "ext"]


@contextlib.contextmanager
def ops_mode(mode: str):
    """SEGRUN_OPS=mode inside the block (segrun.ops reads it at every call)."""
    before = os.environ.get("SEGRUN_OPS")
    os.environ["SEGRUN_OPS"] = mode
    try:
        yield
    finally:
        if before is None:
            del os.environ["SEGRUN_OPS"]
        else:
            os.environ["SEGRUN_OPS"] = before


@pytest.fixture
def reference() -> Path:
    return REFERENCE


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def write_spec(tmp_path):
    """write_spec(text, name="spec.toml") -> path of a spec file in a temporary folder."""
    def write(text: str, name: str = "spec.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def minimal_spec() -> str:
    """The smallest valid spec; tests append tables to it."""
    return 'name = "tiny"\n[data]\nroot = "somewhere"\n'



# what a tiny spec trains with after its [data] keys: the pipelines, the smallest HRNet, AdamW, the CPU
TINY_TRAINING = """
[[data.train_pipeline]]
name = "HorizontalFlip"
[[data.train_pipeline]]
name = "Normalize"
[[data.val_pipeline]]
name = "Normalize"
[model]
backbone = "hrnet_w18_small"
[optimizer]
name = "adamw"
lr = {lr}
weight_decay = 0.0
[trainer]
epochs = {epochs}
accelerator = "cpu"
log_every_n_steps = 1
"""

TINY_SPEC = """
name = "tiny"
seed = 0
[data]
dataset = "{dataset}"
root = "{root}"
batch_size = {batch_size}
num_workers = 0
[data.synthetic]
train_images = {train_images}
val_images = {val_images}
height = 64
width = {width}
""" + TINY_TRAINING


def write_tiny_spec(folder: Path, extra: str = "", name: str = "spec.toml", model: str = "hrnet", **fields) -> Path:
    """A spec training `model` on the smallest HRNet, on synthetic data generated under folder/data;
    `extra` is appended (e.g. [[loss]] tables)."""
    values = {"dataset": "cityscapes", "root": folder / "data", "batch_size": 4, "train_images": 16,
              "val_images": 4, "width": 128, "lr": 0.003, "epochs": 3, **fields}
    path = folder / name
    path.write_text(TINY_SPEC.format(**values).replace("[model]\n", f'[model]\nname = "{model}"\n') + extra)
    return path


def trained_tiny_run(root: Path, **fields) -> tuple[Path, Path]:
    """(spec file, run folder) of a tiny run trained to its end under root (spec, data and runs/
    there), one epoch unless `fields` say otherwise: for module-scoped fixtures of tests that only
    read a finished run."""
    from segrun.cli import main

    spec_file = write_tiny_spec(root, **{"epochs": 1, **fields})
    assert main([str(spec_file), "--runs", str(root / "runs"), "--no-progress"]) == 0
    (folder,) = (root / "runs").iterdir()
    return spec_file, folder


@pytest.fixture
def tiny_spec(tmp_path):
    """tiny_spec(extra="", name="spec.toml", model="hrnet", **fields) -> write_tiny_spec in tmp_path."""
    return lambda extra="", name="spec.toml", **fields: write_tiny_spec(tmp_path, extra, name, **fields)


@pytest.fixture
def signal_during(monkeypatch):
    """signal_during(signum, step=N): this process receives `signum` (`times` times) from inside
    training step N (step="first": the first step this process trains), as from Ctrl-C or a scheduler; validation_after_epoch=E: from inside the first
    validation step after epoch E; final_validation=True: from inside the validation after training;
    checkpoint="last.ckpt": while that file is first written. Once."""
    from segrun.build import AtomicCheckpointIO
    from segrun.task import SegmentationTask

    def arrange(signum=signal.SIGINT, *, step=None, validation_after_epoch=None, final_validation=False, checkpoint=None,
                times=1):
        sent = []

        def send():
            if not sent:
                sent.append(signum)
                for _ in range(times):
                    os.kill(os.getpid(), signum)

        def training_step(task, batch, index, real=SegmentationTask.training_step):
            if task.global_step == step or step == "first":
                send()
            return real(task, batch, index)

        def validation_step(task, batch, index, real=SegmentationTask.validation_step):
            fitting = task.trainer.state.fn == "fit" and not task.trainer.sanity_checking
            if (fitting and task.current_epoch == validation_after_epoch) or \
                    (final_validation and task.trainer.state.fn == "validate"):
                send()
            return real(task, batch, index)

        def save_checkpoint(io, state, path, storage_options=None, real=AtomicCheckpointIO.save_checkpoint):
            if Path(path).name == checkpoint:
                send()
            return real(io, state, path, storage_options)

        monkeypatch.setattr(SegmentationTask, "training_step", training_step)
        monkeypatch.setattr(SegmentationTask, "validation_step", validation_step)
        monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", save_checkpoint)
        return sent

    return arrange


@pytest.fixture
def interrupt_writes(monkeypatch):
    """interrupt_writes(module, after) makes module.write_image raise KeyboardInterrupt (as Ctrl-C
    would) once `after` files are written; the returned function undoes it."""
    def interrupt(module, after: int):
        real_write = module.write_image
        written = []

        def write_then_interrupt(path, array):
            if len(written) == after:
                raise KeyboardInterrupt
            written.append(path)
            real_write(path, array)

        monkeypatch.setattr(module, "write_image", write_then_interrupt)
        return lambda: monkeypatch.setattr(module, "write_image", real_write)

    return interrupt


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of 64 MB (tmpfs) mounted at the returned folder; `.fill(room)` leaves only
    `room` bytes of it free, so the next write that needs more fails as a full disk does (ENOSPC).
    Skipped where tmpfs cannot be mounted (it needs root; .ci/run runs as root)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")

    class SmallDisk(type(folder)):
        def fill(self, room: int = 0) -> None:
            with open(self / ".filler", "ab") as filler:
                while shutil.disk_usage(self).free > room:
                    try:
                        filler.write(b"\0" * min(65536, max(4096, shutil.disk_usage(self).free - room)))
                        filler.flush()
                    except OSError:
                        break

        def partial_files(self) -> list[str]:
            return sorted(path.name for path in self.rglob("*.partial"))

    yield SmallDisk(folder)
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def seeded_weights(tensors, seed: int, conv_gain: float, zero_mean_filters: bool = False) -> dict:
    """Weights made by the rule the upstream reference vectors were computed on (weights.json of
    tests/reference/nvidia_ms_ocr and hrnet_seg): for each (key, shape) in order, from one seeded
    generator: BatchNorm counters 1, running variances in [0.75, 1.25), running means and biases
    N(0, 0.1), convolution filters N(0, conv_gain^2 / fan-in) (each made zero-mean with
    `zero_mean_filters`), other weights of one dimension 1 + N(0, 0.1)."""
    import math

    import torch

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for key, shape in tensors:
        shape = tuple(shape)
        if key.endswith("num_batches_tracked"):
            weights[key] = torch.tensor(1, dtype=torch.int64)
        elif key.endswith("running_var"):
            weights[key] = torch.rand(shape, generator=generator) * 0.5 + 0.75
        elif key.endswith("running_mean"):
            weights[key] = torch.randn(shape, generator=generator) * 0.1
        elif len(shape) == 4:
            weight = torch.randn(shape, generator=generator) * conv_gain / math.sqrt(shape[1] * shape[2] * shape[3])
            weights[key] = weight - weight.mean(dim=(1, 2, 3), keepdim=True) if zero_mean_filters else weight
        elif len(shape) == 1 and key.endswith("weight"):
            weights[key] = 1 + torch.randn(shape, generator=generator) * 0.1
        else:
            weights[key] = torch.randn(shape, generator=generator) * 0.1
    return weights


def logged_losses(folder, version: int = 0) -> list[tuple[int, float]]:
    """(step, train/loss) of each logged training step in one attempt's CSV log of a run folder (a
    path or a segrun.run_folder.RunFolder)."""
    with open(Path(getattr(folder, "path", folder)) / "logs" / "csv" / f"version_{version}" / "metrics.csv") as file:
        return [(int(row["step"]), float(row["train/loss"])) for row in csv.DictReader(file) if row.get("train/loss")]


def validation_scores(folder) -> dict[int, float]:  # folder: a segrun.run_folder.RunFolder
    """val/mIoU by epoch over every attempt's CSV log: each epoch's validation while fitting."""
    scores = {}
    for log in sorted(folder.logs.glob("csv/version_*/metrics.csv")):
        with open(log) as file:
            scores |= {int(row["epoch"]): float(row["val/mIoU"]) for row in csv.DictReader(file) if row.get("val/mIoU")}
    return scores


def assert_same_end(expected, actual) -> None:
    """Every tensor of the final training state equal, bit for bit, every epoch validated with the
    same scores, and the same chosen checkpoint and scores."""
    import torch

    want, got = (torch.load(f.checkpoints / "last.ckpt", map_location="cpu", weights_only=True) for f in (expected, actual))
    assert want["state_dict"].keys() == got["state_dict"].keys()
    for name, tensor in want["state_dict"].items():  # BatchNorm's num_batches_tracked among them
        assert torch.equal(tensor, got["state_dict"][name]), name
    (want_optimizer,), (got_optimizer,) = want["optimizer_states"], got["optimizer_states"]
    assert want_optimizer["param_groups"] == got_optimizer["param_groups"]
    for index, state in want_optimizer["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(got_optimizer["state"][index][key])), (index, key)
    assert want["lr_schedulers"] == got["lr_schedulers"]
    assert (want["epoch"], want["global_step"]) == (got["epoch"], got["global_step"])
    assert validation_scores(expected) == validation_scores(actual)
    want_metrics, got_metrics = (json.loads(f.metrics_file.read_text()) for f in (expected, actual))
    for key in ("mIoU", "pixel_accuracy", "per_class_iou", "confusion_matrix", "epoch", "step", "checkpoint"):
        assert want_metrics[key] == got_metrics[key], key
