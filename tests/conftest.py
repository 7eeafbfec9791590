import contextlib
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parent / "reference"  # copied in; see its README


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


@pytest.fixture
def tiny_spec(tmp_path, write_spec):
    """tiny_spec(extra="", name="spec.toml", **fields) -> a spec training the smallest HRNet on
    synthetic data generated under tmp_path/data; `extra` is appended (e.g. [[loss]] tables)."""
    def write(extra: str = "", name: str = "spec.toml", **fields) -> Path:
        values = {"dataset": "cityscapes", "root": tmp_path / "data", "batch_size": 4, "train_images": 16,
                  "val_images": 4, "width": 128, "lr": 0.003, "epochs": 3, **fields}
        return write_spec(TINY_SPEC.format(**values) + extra, name)

    return write


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
def full_disk(monkeypatch):
    """full_disk() -> a context in which Path.write_bytes writes half its data, then fails as a full
    disk does (segrun writes every file through it, beside its final name)."""
    real_write_bytes = Path.write_bytes

    def write_half_then_fail(self, data):
        real_write_bytes(self, data[: len(data) // 2])
        raise OSError("No space left on device")

    @contextlib.contextmanager
    def fill():
        with monkeypatch.context() as patch:
            patch.setattr(Path, "write_bytes", write_half_then_fail)
            yield

    return fill
