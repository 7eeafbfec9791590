"""`segrun bench train`: training-step throughput, peak GPU memory and inference time per image for
each spec's model, with each loss and each recipe, on synthetic batches (no dataset needed). With
the study's specs this is the study's time-complexity figure: parameters, training time and
inference time per model, as a table and a PNG plot."""
import os
import statistics
import time
import typing

import attrs
import torch

from benchmarks import timing
from segrun import losses, models, spec
from segrun.data import DATASETS
from segrun.errors import UserError
from segrun.resolve import resolve_trainer
from segrun.spec.schema import LossSpec, TrainerSpec


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


def _losses_for(loaded: spec.Spec, loss_name: str | None, outputs: int, num_classes: int):
    """The spec's [[loss]] tables, or `loss_name` on every output (class weights from the spec's
    first loss when the loss is a weighted one)."""
    if loss_name is None:
        tables = loaded.loss
    else:
        weighted = losses.LOSSES[loss_name].takes_class_weights
        weights = (loaded.loss[0].class_weights or "cityscapes") if weighted else None
        tables = [LossSpec(name=loss_name, class_weights=weights)] * outputs
    criteria = [losses.create(t.name, num_classes, 255, t.class_weights, **losses.loss_options(t)) for t in tables]
    return criteria, [t.weight for t in tables]


def _autocast(device: torch.device, precision: str):
    dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def measure_one(loaded: spec.Spec, loss_name: str | None, recipe: Recipe, device: torch.device, batch: int,
                crop: tuple[int, int], inference_size: tuple[int, int], steps: int, warmup: int) -> dict:
    accelerator = "cuda" if device.type == "cuda" else "cpu"
    trainer = resolve_trainer(attrs.evolve(loaded.trainer, precision=recipe.precision,
                                           memory_format=recipe.memory_format, accelerator=accelerator,
                                           compile=False), where=f"recipe {recipe.name}")
    os.environ["SEGRUN_OPS"] = "auto" if recipe.kernels else "torch"
    num_classes = DATASETS[loaded.data.dataset].num_classes
    torch.manual_seed(0)
    model = models.create(loaded.model.name, num_classes, **models.model_params(loaded.model)).to(device)
    channels_last = trainer.memory_format == "channels_last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criteria, weights = _losses_for(loaded, loss_name, len(models.output_names(loaded.model)), num_classes)
    criteria = [criterion.to(device) for criterion in criteria]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=trainer.precision == "16-mixed")
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randn(batch, 3, *crop, generator=generator, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, num_classes, (batch, *crop), generator=generator, device=device)
    target[:, : crop[0] // 8] = 255

    def step():
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, trainer.precision):
            outputs = model(images)
        loss = sum(w * criterion(output, target) for w, criterion, output in zip(weights, criteria, outputs))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    model.train()
    for _ in range(warmup):
        step()
    timing.synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    timing.synchronize(device)
    ms_per_step = (time.perf_counter() - started) / steps * 1e3
    peak_mem_gb = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None

    model.eval()
    image = torch.randn(1, 3, *inference_size, generator=generator, device=device)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    scales = tuple(loaded.eval.scales) if hasattr(model, "predict_scales") else (1.0,)

    def infer():
        with torch.no_grad(), _autocast(device, trainer.precision):
            return model.predict_scales(image, scales) if hasattr(model, "predict_scales") else model(image)[0]

    for _ in range(2):
        infer()
    timing.synchronize(device)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        infer()
        timing.synchronize(device)
        times.append((time.perf_counter() - started) * 1e3)
    return {"model": loaded.model.name, "backbone": loaded.model.backbone, "spec": loaded.name,
            "loss": loss_name or "+".join(t.name for t in loaded.loss), "recipe": recipe.name,
            "precision": trainer.precision, "memory_format": trainer.memory_format, "kernels": recipe.kernels,
            "batch": [batch, 3, *crop], "steps": steps, "warmup": warmup, "ms_per_step": ms_per_step,
            "images_per_s": batch / ms_per_step * 1e3,
            "peak_mem_gb": peak_mem_gb, "inference_ms_per_image": statistics.median(times),
            "inference_size": list(inference_size), "inference_scales": list(scales),
            "params": sum(p.numel() for p in model.parameters())}


def run(spec_paths, device: str = "cuda", steps: int = 20, warmup: int = 3, loss_names=(None,),
        recipes=("study", "default"), batch: int = 6, crop=(512, 1024), inference_size=(1024, 2048),
        progress=print, after_case=lambda result: None) -> dict:
    device = torch.device(device)
    before = os.environ.get("SEGRUN_OPS")
    result = {**timing.header(device), "steps": steps, "warmup": warmup, "train": []}
    try:
        for path in spec_paths:
            loaded = spec.load(path)
            for loss_name in loss_names:
                for recipe in (parse_recipe(r) for r in recipes):
                    row = measure_one(loaded, loss_name, recipe, device, batch, tuple(crop), tuple(inference_size),
                                      steps, warmup)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()  # the measured model is gone; start the next one clean
                    result["train"].append(row)
                    memory = "" if row["peak_mem_gb"] is None else f", peak {row['peak_mem_gb']:.1f} GB"
                    progress(f"  {row['model']:<16} {row['loss']:<10} {recipe.name:<22} {row['ms_per_step']:9.1f} ms/step "
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
        unknown = [name for name in loss_names if name not in losses.LOSSES]
        if unknown:
            raise UserError(f"--losses: unknown loss {unknown[0]!r}; known: {', '.join(losses.LOSSES)}")
    recipes = tuple(name.strip() for name in recipes_option.split(","))
    for recipe in recipes:
        try:
            parse_recipe(recipe)
        except ValueError as error:
            raise UserError(f"--recipes: {error}") from None
    for path in spec_paths:
        spec.load(path)
    result = run(spec_paths, device, steps, warmup, loss_names, recipes, batch, crop, inference_size,
                 after_case=after_case)
    if plot_path is not None:
        plot(result, plot_path)
    return result


def markdown(result: dict) -> str:
    lines = [f"# segrun bench train: {result['device']}", "",
             (f"torch {result['torch']}, CUDA {result['cuda']}, segrun {result['segrun_commit']}, {result['date']}; "
              f"{result['steps']} timed steps after {result['warmup']} warm-up steps on synthetic batches."), "",
             ("| model | loss | recipe | precision | format | kernels | batch | ms/step | images/s | peak GB "
              "| inference ms/image | params |"),
             "| --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["train"]:
        memory = "" if row["peak_mem_gb"] is None else f"{row['peak_mem_gb']:.2f}"
        inference = f"{row['inference_ms_per_image']:.1f} at {'x'.join(map(str, row['inference_size']))}"
        if len(row["inference_scales"]) > 1:
            inference += f", scales {', '.join(map(str, row['inference_scales']))}"
        lines.append(f"| {row['model']} | {row['loss']} | {row['recipe']} | {row['precision']} | {row['memory_format']} "
                     f"| {'on' if row['kernels'] else 'off'} | {'x'.join(map(str, row['batch']))} "
                     f"| {row['ms_per_step']:.1f} | {row['images_per_s']:.2f} | {memory} | {inference} "
                     f"| {row['params'] / 1e6:.2f} M |")
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
    figure.savefig(path, dpi=100)
    plt.close(figure)
