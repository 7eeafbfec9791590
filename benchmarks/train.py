"""`segrun bench train`: training-step throughput, peak GPU memory and inference time per image for
each spec's model, with each loss and each recipe, on synthetic batches (no dataset needed). The
step timed is segrun's own: the spec's SegmentationTask fitted by the spec's Lightning Trainer; a
bare PyTorch loop over the same model and batch is reported beside it as a peer, to show the
overhead of Lightning and the task. With
the study's specs this is the study's time-complexity figure: parameters, training time and
inference time per model, as a table and a PNG plot."""
import os
import statistics
import tempfile
import time
import typing
import warnings
from pathlib import Path

import attrs
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader

from benchmarks import timing
from segrun import build, models
from segrun.atomic_write import write_figure
from segrun.data import DATASETS
from segrun.errors import UserError
from segrun.losses import LOSSES
from segrun.resolve import resolve_trainer
from segrun.run_folder import RunFolder
from segrun.spec import LossSpec, Spec, TrainerSpec


@attrs.frozen
class Recipe:
    name: str
    precision: str  # as trainer.precision, "auto" included
    memory_format: str  # as trainer.memory_format
    kernels: bool  # SEGRUN_OPS=auto (kernels where they are faster) or torch


RECIPES = {
    # The study: fp16 autocast, NCHW, eager PyTorch everywhere.
    "study": Recipe("study", "16-mixed", "contiguous", False),
    # segrun's defaults: precision and memory format chosen for the device, kernels on.
    "default": Recipe("default", "auto", "auto", True),
}


PRECISIONS = typing.get_args(attrs.fields_dict(TrainerSpec)["precision"].type)
MEMORY_FORMATS = typing.get_args(attrs.fields_dict(TrainerSpec)["memory_format"].type)


def parse_recipe(text: str) -> Recipe:
    """A named recipe, or PRECISION/MEMORY_FORMAT/kernels (kernels: on or off)."""
    if text in RECIPES:
        return RECIPES[text]
    parts = text.split("/")
    if (len(parts) != 3 or parts[0] not in PRECISIONS or parts[1] not in MEMORY_FORMATS
            or parts[2] not in ("on", "off")):
        raise ValueError(f"recipe {text!r}: expected one of {', '.join(RECIPES)} or PRECISION/FORMAT/on|off with "
                         f"PRECISION in {', '.join(PRECISIONS)} and FORMAT in {', '.join(MEMORY_FORMATS)}, "
                         "e.g. 32/contiguous/off")
    return Recipe(text, parts[0], parts[1], parts[2] == "on")


def row_spec(loaded: Spec, loss_name: str | None, recipe: Recipe, device: torch.device) -> Spec:
    """The spec a user would train for this row: `loss_name` on every output (class weights from
    the spec's first loss, else "cityscapes", when the loss is a weighted one), the recipe's
    precision and memory format, one device, no compile."""
    if loss_name is not None:
        weighted = LOSSES[loss_name].takes_class_weights
        weights = (loaded.loss[0].class_weights or "cityscapes") if weighted else None
        outputs = len(models.output_names(loaded.model))
        loaded = attrs.evolve(loaded, loss=(LossSpec(name=loss_name, class_weights=weights),) * outputs)
    accelerator = "cuda" if device.type == "cuda" else "cpu"
    trainer = resolve_trainer(attrs.evolve(loaded.trainer, precision=recipe.precision, memory_format=recipe.memory_format,
                                           accelerator=accelerator, devices=1, num_nodes=1, strategy="auto",
                                           compile=False, epochs=1, max_steps=-1), where=f"recipe {recipe.name}")
    # no validation images logged: they would read the dataset, which the synthetic batches stand in for
    return attrs.evolve(loaded, trainer=trainer, eval=attrs.evolve(loaded.eval, log_images=0))


class StepTimer(Callback):
    """Wall time of the training steps after the first `warmup` of an epoch, synchronised with the
    device, and the peak GPU memory over them."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = warmup, steps
        self.ms_per_step: float | None = None
        self.peak_mem_gb: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            timing.synchronize(pl_module.device)
            if pl_module.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(pl_module.device)
            self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.warmup + self.steps - 1:
            timing.synchronize(pl_module.device)
            self.ms_per_step = (time.perf_counter() - self._started) / self.steps * 1e3
            if pl_module.device.type == "cuda":
                self.peak_mem_gb = torch.cuda.max_memory_allocated(pl_module.device) / 2**30


def synthetic_batch(batch: int, crop: tuple[int, int], num_classes: int, device: torch.device):
    """One random batch on the device, the top eighth of every label ignored."""
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randn(batch, 3, *crop, generator=generator, device=device)
    target = torch.randint(0, num_classes, (batch, *crop), generator=generator, device=device)
    target[:, : crop[0] // 8] = 255
    return images, target


def repeated_batch(images, target, count: int) -> DataLoader:
    """A loader that yields the same (images, target) batch `count` times (batch_size=None: the
    dataset's items are whole batches)."""
    return DataLoader([(images, target)] * count, batch_size=None)


def segrun_ms_per_step(row: Spec, images, target, steps: int, warmup: int):
    """segrun's own training: the spec's task fitted by the spec's Trainer (precision plugin,
    memory format, logging and checkpoints into a scratch run folder) for warmup + steps batches;
    the batch is already on the device, so no data loading is timed. Returns ms per step, peak
    GPU GB, the trainer (for its precision plugin) and the trained task."""
    task = build.task(row, load_weights=False)
    timer = StepTimer(warmup, steps)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build.trainer(row, RunFolder(Path(scratch)), progress=False, callbacks=[timer])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(does not have many workers|smaller than the logging interval)")
            trainer.fit(task, train_dataloaders=repeated_batch(images, target, warmup + steps),
                        val_dataloaders=repeated_batch(images[:1], target[:1], 1))
    return timer.ms_per_step, timer.peak_mem_gb, trainer, task


def bare_loop_ms_per_step(row: Spec, images, target, steps: int, warmup: int) -> float:
    """PEER, not segrun: the same model, losses and batch in a bare PyTorch loop (SGD, autocast,
    GradScaler written out by hand), to show what Lightning and segrun's task add per step."""
    device = images.device
    model = build.model(row).to(device)
    channels_last = row.trainer.memory_format == "channels_last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    criteria = [criterion.to(device) for criterion in build.losses(row)]
    weights = [loss.weight for loss in row.loss]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=row.trainer.precision == "16-mixed")
    dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(row.trainer.precision)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            outputs = model(images)
        loss = sum(w * criterion(output, target) for w, criterion, output in zip(weights, criteria, outputs))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    model.train()
    for _ in range(warmup):
        step()
    timing.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    timing.synchronize(device)
    return (time.perf_counter() - started) / steps * 1e3


def inference_ms(task, trainer: pl.Trainer, device: torch.device, size: tuple[int, int]) -> float:
    """Median of 5 timed predictions of one image with the spec's [eval] options, as validation runs them."""
    task = task.to(device).eval()
    image = torch.randn(1, 3, *size, generator=torch.Generator(device=device).manual_seed(1), device=device)

    def infer():
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            return task.predict(task.model, task._in_layout(image))

    for _ in range(2):
        infer()
    timing.synchronize(device)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        infer()
        timing.synchronize(device)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def measure_one(loaded: Spec, loss_name: str | None, recipe: Recipe, device: torch.device, batch: int,
                crop: tuple[int, int], inference_size: tuple[int, int], steps: int, warmup: int) -> dict:
    row = row_spec(loaded, loss_name, recipe, device)
    os.environ["SEGRUN_OPS"] = "auto" if recipe.kernels else "torch"  # as a user chooses the implementations
    images, target = synthetic_batch(batch, crop, DATASETS[row.data.dataset].num_classes, device)
    torch.manual_seed(0)
    ms_per_step, peak_mem_gb, trainer, task = segrun_ms_per_step(row, images, target, steps, warmup)
    torch.manual_seed(0)
    bare_ms = bare_loop_ms_per_step(row, images, target, steps, warmup)
    scales = tuple(row.eval.scales)
    return {"model": row.model.name, "backbone": row.model.backbone, "spec": row.name,
            "loss": loss_name or "+".join(t.name for t in row.loss), "recipe": recipe.name,
            "precision": row.trainer.precision, "memory_format": row.trainer.memory_format, "kernels": recipe.kernels,
            "batch": [batch, 3, *crop], "steps": steps, "warmup": warmup, "ms_per_step": ms_per_step,
            "images_per_s": batch / ms_per_step * 1e3, "bare_loop_ms_per_step": bare_ms,
            "lightning_overhead_ms": ms_per_step - bare_ms,
            "peak_mem_gb": peak_mem_gb, "inference_ms_per_image": inference_ms(task, trainer, device, inference_size),
            "inference_size": list(inference_size), "inference_scales": list(scales),
            "params": sum(p.numel() for p in task.model.parameters())}


def run(spec_paths, device: str = "cuda", steps: int = 20, warmup: int = 3, loss_names=(None,),
        recipes=("study", "default"), batch: int = 6, crop=(512, 1024), inference_size=(1024, 2048),
        progress=print, after_case=lambda result: None) -> dict:
    device = torch.device(device)
    before = os.environ.get("SEGRUN_OPS")
    result = {**timing.header(device), "steps": steps, "warmup": warmup, "train": []}
    try:
        for path in spec_paths:
            loaded = build.load_spec(path, pipelines=False)
            for loss_name in loss_names:
                for recipe in (parse_recipe(r) for r in recipes):
                    row = measure_one(loaded, loss_name, recipe, device, batch, tuple(crop), tuple(inference_size),
                                      steps, warmup)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()  # the measured model is gone; start the next one clean
                    result["train"].append(row)
                    memory = "" if row["peak_mem_gb"] is None else f", peak {row['peak_mem_gb']:.1f} GB"
                    progress(f"  {row['model']:<16} {row['loss']:<10} {recipe.name:<22} {row['ms_per_step']:9.1f} ms/step "
                             f"(bare loop {row['bare_loop_ms_per_step']:.1f}) "
                             f"{row['images_per_s']:7.2f} img/s{memory}, inference {row['inference_ms_per_image']:.1f} ms")
                    after_case(result)
    finally:
        if before is None:
            os.environ.pop("SEGRUN_OPS", None)
        else:
            os.environ["SEGRUN_OPS"] = before
    return result


def run_from_options(spec_paths, device: str, steps: int, warmup: int, losses_option: str | None, recipes_option: str,
                     batch: int, crop, inference_size, plot_path=None, after_case=lambda result: None) -> dict:
    """`segrun bench train` from its options as typed: the comma-separated --losses and --recipes and every
    spec are checked before anything is measured; the figure is written to plot_path when one is given."""
    loss_names = (None,)
    if losses_option:
        loss_names = tuple(name.strip() for name in losses_option.split(","))
        unknown = [name for name in loss_names if name not in LOSSES]
        if unknown:
            raise UserError(f"--losses: unknown loss {unknown[0]!r}; known: {', '.join(LOSSES)}")
    recipes = tuple(name.strip() for name in recipes_option.split(","))
    for recipe in recipes:
        try:
            parse_recipe(recipe)
        except ValueError as error:
            raise UserError(f"--recipes: {error}") from None
    for path in spec_paths:
        build.load_spec(path, pipelines=False)
    result = run(spec_paths, device, steps, warmup, loss_names, recipes, batch, crop, inference_size,
                 after_case=after_case)
    if plot_path is not None:
        plot(result, plot_path)
    return result


def markdown(result: dict) -> str:
    lines = [f"# segrun bench train: {result['device']}", "",
             (f"torch {result['torch']}, CUDA {result['cuda']}, segrun {result['segrun_commit']}, {result['date']}; "
              f"{result['steps']} timed steps after {result['warmup']} warm-up steps on synthetic batches."), "",
             ("ms/step is segrun's training step (its task under its Lightning Trainer); the bare-loop column is a "
              "peer: the same model and batch in a plain PyTorch loop."), "",
             ("| model | loss | recipe | precision | format | kernels | batch | ms/step | images/s | peak GB "
              "| inference ms/image | params | peer: bare loop ms/step |"),
             "| --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["train"]:
        memory = "" if row["peak_mem_gb"] is None else f"{row['peak_mem_gb']:.2f}"
        inference = f"{row['inference_ms_per_image']:.1f} at {'x'.join(map(str, row['inference_size']))}"
        if len(row["inference_scales"]) > 1:
            inference += f", scales {', '.join(map(str, row['inference_scales']))}"
        lines.append(f"| {row['model']} | {row['loss']} | {row['recipe']} | {row['precision']} | {row['memory_format']} "
                     f"| {'on' if row['kernels'] else 'off'} | {'x'.join(map(str, row['batch']))} "
                     f"| {row['ms_per_step']:.1f} | {row['images_per_s']:.2f} | {memory} | {inference} "
                     f"| {row['params'] / 1e6:.2f} M | {row['bare_loop_ms_per_step']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path) -> None:
    """The time-complexity figure: per model, parameters, training time per step and inference
    time per image (the first loss and recipe measured for each model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = {}
    for row in result["train"]:
        first.setdefault(row["model"], row)
    names = list(first)
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for axis, key, label in zip(axes, ("params", "ms_per_step", "inference_ms_per_image"),
                                ("parameters (M)", "training ms / step", "inference ms / image")):
        values = [first[name][key] / (1e6 if key == "params" else 1) for name in names]
        axis.bar(names, values, color="#4c72b0")
        axis.set_title(label)
        axis.tick_params(axis="x", rotation=30)
    figure.suptitle(f"{result['device']}, torch {result['torch']}")
    figure.tight_layout()
    write_figure(figure, path, dpi=100)
    plt.close(figure)
