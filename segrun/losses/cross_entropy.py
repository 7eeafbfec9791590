"""Cross entropy over pixels, plain and class-weighted, as torch.nn.functional.cross_entropy."""
import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropy(nn.Module):
    """Mean cross entropy over the pixels whose label is not `ignore_index`."""

    takes_class_weights = False

    def __init__(self, ignore_index: int = 255):
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("class_weights", None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != self.ignore_index).any():
            # F.cross_entropy returns 0/0 = NaN here; a zero that keeps the graph is what training needs.
            return logits.sum() * 0.0
        return F.cross_entropy(logits, target, weight=self.class_weights, ignore_index=self.ignore_index)


class WeightedCrossEntropy(CrossEntropy):
    """Cross entropy with per-class weights; the mean divides by the summed weights of the
    counted pixels (torch's `weight=` semantics)."""

    takes_class_weights = True

    def __init__(self, class_weights, ignore_index: int = 255):
        super().__init__(ignore_index)
        self.class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
