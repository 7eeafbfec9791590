"""Hierarchical multi-scale attention fusion (Tao et al. 2020). `attention_fuse_torch` is the
specification; the compiled kernels (csrc/cuda/attention_fuse.cu) must reproduce it."""
import torch

from segrun.layers import resize
from segrun.ops import extension


def attention_fuse(pred_hi: torch.Tensor, pred_lo: torch.Tensor, attn_lo: torch.Tensor,
                   align_corners: bool = True) -> torch.Tensor:
    """up(attn_lo * pred_lo) + (1 - up(attn_lo)) * pred_hi, where `up` resizes bilinearly to
    pred_hi's height and width.

    pred_hi: [N, C, H, W] prediction of the higher-resolution scale.
    pred_lo: [N, C, h, w] prediction of the lower-resolution scale (any h, w).
    attn_lo: [N, 1, h, w] (or [N, C, h, w]) attention of the lower scale, in [0, 1].
    Returns [N, C, H, W] in the inputs' dtype. Differentiable in all three inputs.
    """
    if extension.use_extension(pred_hi.device, "attention_fuse"):
        _check(pred_hi, pred_lo, attn_lo)
        # One dtype for all three, as PyTorch's type promotion would give the fallback's result.
        dtype = torch.promote_types(torch.promote_types(pred_hi.dtype, pred_lo.dtype), attn_lo.dtype)
        return torch.ops.segrun.attention_fuse(pred_hi.to(dtype), pred_lo.to(dtype), attn_lo.to(dtype), align_corners)
    return attention_fuse_torch(pred_hi, pred_lo, attn_lo, align_corners)  # checks the inputs itself


def _check(pred_hi: torch.Tensor, pred_lo: torch.Tensor, attn_lo: torch.Tensor) -> None:
    if pred_hi.dim() != 4 or pred_lo.dim() != 4 or attn_lo.dim() != 4:
        raise ValueError("attention_fuse takes 4-d tensors [N, C, H, W]")
    if pred_lo.shape[:2] != pred_hi.shape[:2]:
        raise ValueError(f"pred_lo {list(pred_lo.shape)} and pred_hi {list(pred_hi.shape)} differ in batch or classes")
    if attn_lo.shape[0] != pred_lo.shape[0] or attn_lo.shape[1] not in (1, pred_lo.shape[1]) or attn_lo.shape[-2:] != pred_lo.shape[-2:]:
        raise ValueError(f"attn_lo {list(attn_lo.shape)} must be [N, 1, h, w] beside pred_lo {list(pred_lo.shape)}")


def attention_fuse_torch(pred_hi: torch.Tensor, pred_lo: torch.Tensor, attn_lo: torch.Tensor,
                         align_corners: bool = True) -> torch.Tensor:
    """The PyTorch implementation of attention_fuse (its specification)."""
    _check(pred_hi, pred_lo, attn_lo)
    size = pred_hi.shape[-2:]
    return resize(attn_lo * pred_lo, size, align_corners) + (1 - resize(attn_lo, size, align_corners)) * pred_hi


def _fake(pred_hi, pred_lo, attn_lo, align_corners):
    return torch.empty_like(pred_hi)


def _fake_backward(grad, pred_hi, pred_lo, attn_lo, align_corners):
    return torch.empty_like(pred_hi), torch.empty_like(pred_lo), torch.empty_like(attn_lo)


def _setup_context(ctx, inputs, output):
    pred_hi, pred_lo, attn_lo, align_corners = inputs
    ctx.save_for_backward(pred_hi, pred_lo, attn_lo)
    ctx.align_corners = align_corners


def _backward(ctx, grad):
    pred_hi, pred_lo, attn_lo = ctx.saved_tensors
    grads = torch.ops.segrun.attention_fuse_backward(grad, pred_hi, pred_lo, attn_lo, ctx.align_corners)
    return (*grads, None)


@extension.after_loading
def _register() -> None:
    """Shapes for fake tensors (torch.compile, meta) and the autograd formula. No autocast rule:
    the op runs in its inputs' own dtype."""
    torch.library.register_fake("segrun::attention_fuse", _fake)
    torch.library.register_fake("segrun::attention_fuse_backward", _fake_backward)
    torch.library.register_autograd("segrun::attention_fuse", _backward, setup_context=_setup_context)
