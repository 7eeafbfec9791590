"""Confusion matrix counting, the core of mIoU. `confusion_matrix_torch` is the specification;
the compiled kernel (csrc/cuda/confusion_matrix.cu) must reproduce it exactly."""
import torch

from segrun.ops import extension


def confusion_matrix(input: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """Count (target, prediction) pairs.

    input: logits [N, C, H, W] (floating point; the prediction is their argmax over C, first index
        on ties, as torch.argmax) or predicted labels [N, H, W] (integer).
    target: labels [N, H, W], integer.
    Pixels whose target is `ignore_index` or outside [0, num_classes) are skipped, as are pixels
    whose predicted label is outside [0, num_classes).
    Returns int64 [num_classes, num_classes] on input's device: rows = target, columns = prediction.
    """
    if extension.use_extension(input.device, "confusion_matrix"):
        _check(input, target, num_classes)
        return torch.ops.segrun.confusion_matrix(input.detach(), target, num_classes, ignore_index)
    return confusion_matrix_torch(input, target, num_classes, ignore_index)  # checks the inputs itself


def _check(input: torch.Tensor, target: torch.Tensor, num_classes: int) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if input.is_floating_point() and (input.dim() != 4 or input.shape[1] != num_classes):
        raise ValueError(f"logits must be [N, {num_classes}, H, W], got {list(input.shape)}")
    expected = (input.shape[0], *input.shape[2:]) if input.is_floating_point() else tuple(input.shape)
    if expected != tuple(target.shape) or target.dim() != 3:
        raise ValueError(f"prediction {list(expected)} and target {list(target.shape)} must both be [N, H, W]")
    if target.is_floating_point():
        raise ValueError(f"target must hold integer labels, got {target.dtype}")


def confusion_matrix_torch(input: torch.Tensor, target: torch.Tensor, num_classes: int,
                           ignore_index: int = 255) -> torch.Tensor:
    """The PyTorch implementation of confusion_matrix (its specification)."""
    _check(input, target, num_classes)
    prediction = input.argmax(dim=1) if input.is_floating_point() else input
    target = target.long()
    prediction = prediction.long()
    counted = (target != ignore_index) & (target >= 0) & (target < num_classes) & (prediction >= 0) & (prediction < num_classes)
    pair_index = target[counted] * num_classes + prediction[counted]
    counts = torch.bincount(pair_index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _fake(input, target, num_classes, ignore_index):
    return input.new_empty((num_classes, num_classes), dtype=torch.int64)


@extension.after_loading
def _register() -> None:
    """Shapes for fake tensors (torch.compile, meta). No autograd (counts have no gradient) and no
    autocast rule: the op reads its inputs in their own dtype."""
    torch.library.register_fake("segrun::confusion_matrix", _fake)
