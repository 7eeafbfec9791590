"""Cross entropy over pixels, plain and class-weighted, as torch.nn.functional.cross_entropy."""
import torch

from segrun.losses.base import PixelLoss, cross_entropy


class CrossEntropy(PixelLoss):
    """Mean cross entropy over the pixels whose label is not `ignore_index`."""

    def __init__(self, ignore_index: int = 255):
        super().__init__(ignore_index)
        self.register_buffer("class_weights", None)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, target, self.ignore_index, self.class_weights)


class WeightedCrossEntropy(CrossEntropy):
    """Cross entropy with per-class weights; the mean divides by the summed weights of the
    counted pixels (torch's `weight=` semantics)."""

    takes_class_weights = True

    def __init__(self, class_weights, ignore_index: int = 255):
        super().__init__(ignore_index)
        self.class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
