"""Hierarchical multi-scale attention fusion (Tao et al. 2020). Pure PyTorch: the specification
that a fused kernel must reproduce."""
import torch
import torch.nn.functional as F


def _resize(tensor: torch.Tensor, size, align_corners: bool) -> torch.Tensor:
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=align_corners)


def attention_fuse(pred_hi: torch.Tensor, pred_lo: torch.Tensor, attn_lo: torch.Tensor,
                   align_corners: bool = True) -> torch.Tensor:
    """up(attn_lo * pred_lo) + (1 - up(attn_lo)) * pred_hi, where `up` resizes bilinearly to
    pred_hi's height and width.

    pred_hi: [N, C, H, W] prediction of the higher-resolution scale.
    pred_lo: [N, C, h, w] prediction of the lower-resolution scale (any h, w).
    attn_lo: [N, 1, h, w] (or [N, C, h, w]) attention of the lower scale, in [0, 1].
    Returns [N, C, H, W] in the inputs' dtype. Differentiable in all three inputs.
    """
    if pred_hi.dim() != 4 or pred_lo.dim() != 4 or attn_lo.dim() != 4:
        raise ValueError("attention_fuse takes 4-d tensors [N, C, H, W]")
    if pred_lo.shape[:2] != pred_hi.shape[:2]:
        raise ValueError(f"pred_lo {list(pred_lo.shape)} and pred_hi {list(pred_hi.shape)} differ in batch or classes")
    if attn_lo.shape[0] != pred_lo.shape[0] or attn_lo.shape[1] not in (1, pred_lo.shape[1]) or attn_lo.shape[-2:] != pred_lo.shape[-2:]:
        raise ValueError(f"attn_lo {list(attn_lo.shape)} must be [N, 1, h, w] beside pred_lo {list(pred_lo.shape)}")
    size = pred_hi.shape[-2:]
    return _resize(attn_lo * pred_lo, size, align_corners) + (1 - _resize(attn_lo, size, align_corners)) * pred_hi
