"""Optimizer and learning-rate schedule of a spec."""
from typing import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from segrun.spec import OptimizerSpec, ScheduleSpec


def build_optimizer(parameters, spec: OptimizerSpec) -> torch.optim.Optimizer:
    if spec.name == "sgd":
        return torch.optim.SGD(parameters, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov,
                               weight_decay=spec.weight_decay)
    return torch.optim.AdamW(parameters, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)


def lr_factor(step: int, total_steps: int, spec: ScheduleSpec) -> float:
    """Multiplier of the base lr at optimizer step `step` of `total_steps`: linear warmup from
    warmup_start_factor, then poly decay (1 - step / total) ** power, or constant 1."""
    if step < spec.warmup_steps:
        return spec.warmup_start_factor + (1.0 - spec.warmup_start_factor) * step / spec.warmup_steps
    if spec.name == "constant":
        return 1.0
    return (1.0 - min(step, total_steps) / max(total_steps, 1)) ** spec.power


def optimization(optimizer_spec: OptimizerSpec, schedule_spec: ScheduleSpec) -> Callable[..., dict]:
    """A function (parameters, total_steps) -> Lightning's optimizer config, the schedule
    stepped per optimizer step."""
    def configure(parameters, total_steps: int) -> dict:
        optimizer = build_optimizer(parameters, optimizer_spec)
        schedule = LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, schedule_spec))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    return configure
