"""What every loss shares: float32 math outside autocast, the valid-pixel mask, option checks."""
import math

import torch
import torch.nn.functional as F
from torch import nn


class OptionError(ValueError):
    """An invalid loss option; `key` is its key in the spec's [[loss]] table (e.g. pool_stride)."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def check_number(key: str, value, low: float, high: float = math.inf, integer: bool = False,
                 low_open: bool = False) -> None:
    """OptionError unless `value` is a number (an integer with `integer`) in [low, high], or in
    (low, high] with `low_open`."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise OptionError(key, f"expected {kind}, got {value!r}")
    if not (low < value if low_open else low <= value) or value > high:
        raise OptionError(key, f"expected {kind} in {'(' if low_open else '['}{low}, {high}], got {value!r}")


def check_choice(key: str, value, choices) -> None:
    if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
        raise OptionError(key, f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")


class PixelLoss(nn.Module):
    """loss(logits [N, C, H, W], target [N, H, W]) -> scalar. Subclasses implement `compute`,
    which always sees float32 logits with autocast off: losses sum over many pixels, and the
    RMI algebra needs more precision than half types give."""

    takes_class_weights = False  # the weighted variants require class_weights, the others refuse them

    def __init__(self, ignore_index: int = 255):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.compute(logits.float(), target)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def valid_one_hot(self, target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(one-hot [N, C, H, W] float, zero at ignored pixels; valid mask [N, 1, H, W] float).
        Labels outside [0, C) count as ignored."""
        valid = (target != self.ignore_index) & (target >= 0) & (target < num_classes)
        one_hot = F.one_hot(torch.where(valid, target, 0).long(), num_classes).permute(0, 3, 1, 2).float()
        mask = valid.unsqueeze(1).float()
        return one_hot * mask, mask


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, class_weights=None) -> torch.Tensor:
    """Mean cross entropy over non-ignored pixels; 0 (with a graph) when every pixel is ignored,
    where torch's mean would be 0/0."""
    if not (target != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target.long(), weight=class_weights, ignore_index=ignore_index)
