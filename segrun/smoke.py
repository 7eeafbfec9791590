"""`--smoke`: any spec or chain tried on a small machine before renting GPUs. The spec's recipe at an
eighth of its image sizes (Cityscapes' 1024x2048 becomes 128x256) on synthetic data in its dataset's
layout (for a user's own folder dataset: made-up scenes of its classes, stored as it declares them),
with the model's smallest backbone from scratch, a few steps and this machine's devices: the same
model family, losses, schedule, pipelines and test protocol, so everything but the scale runs as it
will. Smoke runs go to <runs>/smoke/, away from real ones."""
import hashlib

from segrun import models
from segrun.spec import Spec
from segrun.spec.loader import to_table

SCALE = 8  # image sizes in the spec's pipelines and windows are divided by it
STEPS = 4  # training steps; validation and the test protocol run at the end
SIZE_KEYS = ("height", "width", "min_height", "min_width", "max_size")  # albumentations' size arguments
# the smoke dataset's images: the dataset's usual size divided by SCALE
SYNTHETIC_SIZE = {"cityscapes": (128, 256), "pascal_context": (64, 64), "ade20k": (64, 64), "folder": (64, 64)}


def _synthetic_size(dataset: str) -> tuple[int, int]:
    return next(size for prefix, size in SYNTHETIC_SIZE.items() if dataset.startswith(prefix))


def _smoke_root(data) -> str:
    """Where the smoke run's synthetic data goes: one folder per dataset, and for a folder dataset
    one per layout and stored values (two such specs must not read each other's scenes)."""
    if data.dataset != "folder":
        return f"smoke/{data.dataset}"
    declared = repr((data.images, data.labels, data.classes, data.label_values, data.ignore_index))
    return f"smoke/folder-{hashlib.sha256(declared.encode()).hexdigest()[:8]}"


def _toml(value) -> str:
    return repr(list(value)) if isinstance(value, (tuple, list)) else repr(value)


def smoke_overrides(spec: Spec) -> list[str]:
    """KEY=VALUE overrides that turn `spec` into its smoke run (see the module docstring)."""
    overrides = [
        f'model.backbone="{models.smallest_backbone(spec.model.name)}"', "model.pretrained=false",
        "model.pretrained_skip=[]",
        'trainer.accelerator="auto"', "trainer.devices=1", "trainer.num_nodes=1", 'trainer.strategy="auto"',
        "trainer.sync_batchnorm=false", 'trainer.precision="auto"', 'trainer.memory_format="auto"',
        "trainer.epochs=1", f"trainer.max_steps={STEPS}", "eval.every_n_epochs=1",
        "data.batch_size=2", "data.num_workers=0",
        f'data.root="{_smoke_root(spec.data)}"',
        "data.synthetic={{train_images = 8, val_images = 2, height = {}, width = {}}}".format(
            *_synthetic_size(spec.data.dataset)),
    ]
    pipelines = {"data.train_pipeline": spec.data.train_pipeline, "data.val_pipeline": spec.data.val_pipeline}
    if spec.test is not None:
        pipelines["test.pipeline"] = spec.test.pipeline
    for key, steps in pipelines.items():
        for index, step in enumerate(steps):
            for name, value in to_table(step).items():
                if name in SIZE_KEYS and isinstance(value, int):
                    overrides.append(f"{key}.{index}.{name}={max(1, value // SCALE)}")
    for section in ("eval", "test"):
        options = getattr(spec, section)
        if options is not None and options.sliding is not None:
            overrides.append(f"{section}.sliding={_toml(tuple(max(1, side // SCALE) for side in options.sliding))}")
    return overrides


def smoke_spec(path, overrides=()) -> Spec:
    """The smoke run of the spec at `path` with `overrides` (checked as any spec)."""
    from segrun import build

    return build.load_spec(path, [*overrides, *smoke_overrides(build.load_spec(path, overrides, pipelines=False))])


def smoke_runs(runs_dir):
    """Where smoke runs go: beside the real ones, never among them."""
    return runs_dir / "smoke"
