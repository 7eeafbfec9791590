"""`segrun summary`: parameters, multiply-accumulates and outputs of a spec's model."""
import torch
from torch.utils.flop_counter import FlopCounterMode

from segrun import build, models
from segrun.data import dataset_of
from segrun.spec import Spec


def crop_size(spec: Spec) -> tuple[int, int]:
    """The training crop: the first train_pipeline step with height and width, else 1024x2048."""
    for step in spec.data.train_pipeline:
        if "height" in step.params and "width" in step.params:
            return int(step.params["height"]), int(step.params["width"])
    return 1024, 2048


def summarize(spec: Spec, size: tuple[int, int] | None = None) -> str:
    size = size or crop_size(spec)
    num_classes = dataset_of(spec.data).num_classes
    with torch.device("meta"):  # shapes only: nothing is allocated or computed
        model = build.model(spec)
        images = torch.empty(2, 3, *size)  # two: training-mode batch norm after global pooling needs > 1 value
    parameters = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.train()  # the training forward, all outputs
        model(images)
    macs = counter.get_total_flops() / 2 / len(images)
    names = models.output_names(spec.model)
    return "\n".join([
        f"model       {spec.model.name} ({spec.model.backbone}), {num_classes} classes",
        f"parameters  {parameters:,}",
        f"MACs        {macs / 1e9:,.1f} G per image at {size[0]}x{size[1]} (training forward)",
        f"outputs     {', '.join(f'{i}: {name}' for i, name in enumerate(names))}",
    ])
