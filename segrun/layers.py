"""Building blocks shared by the models, the heads, inference and the ops' fallbacks.

A top-level module, not part of segrun.models: segrun.ops uses it and segrun.models uses segrun.ops.
"""
import torch
import torch.nn.functional as F
from torch import nn


def resize(tensor: torch.Tensor, size, align_corners: bool) -> torch.Tensor:
    """Bilinear resize of [N, C, H, W] to `size` (a no-op at that size already)."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=align_corners)


def rescale(images: torch.Tensor, scale: float, align_corners: bool) -> torch.Tensor:
    """Bilinear rescale of [N, C, H, W] by `scale` (a no-op at 1.0); the size is floor(scale * size)."""
    if scale == 1.0:
        return images
    return F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=align_corners,
                         recompute_scale_factor=True)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1,
                 bias: bool = False) -> nn.Sequential:
    """Conv, BatchNorm, ReLU, padded so the output keeps the input's height and width (odd kernels).
    Keys: `0.weight` for the conv, `1.weight` for the BN."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation,
                  bias=bias),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
