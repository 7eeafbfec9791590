"""Test-time prediction: several scales, left-right flip and sliding windows, for every model.

Models that fuse scales themselves (a ScaleFusingModel, e.g. hrnet_ocr_ms by attention) do so
through `predict_scales`; for the others, the softmax probabilities of each scale, resized to the
image, are averaged.
Flipped predictions are flipped back and averaged; sliding windows (stride 2/3 of the window)
average the logits where windows overlap.
"""
import torch

from segrun.layers import rescale, resize
from segrun.models.base import ScaleFusingModel, SegmentationModel


def window_starts(size: int, window: int) -> list[int]:
    if size <= window:
        return [0]
    stride = max(1, window * 2 // 3)
    return [*range(0, size - window, stride), size - window]


def sliding_logits(forward, images: torch.Tensor, window) -> torch.Tensor:
    """forward(crop) -> logits at the crop's size, applied window by window over `images`."""
    if window is None:
        return forward(images)
    height, width = images.shape[-2:]
    total, count = None, torch.zeros(1, 1, height, width, device=images.device)
    for top in window_starts(height, window[0]):
        for left in window_starts(width, window[1]):
            logits = forward(images[..., top:top + window[0], left:left + window[1]])
            if total is None:
                total = images.new_zeros(images.shape[0], logits.shape[1], height, width, dtype=logits.dtype)
            total[..., top:top + logits.shape[-2], left:left + logits.shape[-1]] += logits
            count[..., top:top + logits.shape[-2], left:left + logits.shape[-1]] += 1
    return total / count


def _probabilities(model: SegmentationModel, images: torch.Tensor, scales, window) -> torch.Tensor:
    if isinstance(model, ScaleFusingModel):
        return sliding_logits(lambda crop: model.predict_scales(crop, scales), images, window).softmax(1)
    total = 0
    for scale in scales:
        logits = sliding_logits(lambda crop: model(crop)[0], rescale(images, scale, model.align_corners), window)
        total = total + resize(logits, images.shape[-2:], model.align_corners).float().softmax(1)
    return total / len(scales)


def predict(model: SegmentationModel, images: torch.Tensor, scales=(1.0,), flip: bool = False, window=None) -> torch.Tensor:
    """Class probabilities [N, C, H, W] for images [N, 3, H, W]."""
    probabilities = _probabilities(model, images, scales, window)
    if flip:
        probabilities = (probabilities + _probabilities(model, images.flip(-1), scales, window).flip(-1)) / 2
    return probabilities
