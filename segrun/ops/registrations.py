"""The Python half of each op in the segrun operator library: shapes for fake tensors
(torch.compile, meta), autograd formulas and autocast rules. Registered once, after loading."""
import torch

RMI_SAVED = 2 * 81 + 2 * 9  # per (image, class): two 9x9 adjoints and two 9-vectors of means


def _fake_confusion_matrix(input, target, num_classes, ignore_index):
    return input.new_empty((num_classes, num_classes), dtype=torch.int64)


def _fake_rmi_forward(labels, probs, alpha):
    n, c = probs.shape[:2]
    return probs.new_empty((n, c), dtype=torch.float64), probs.new_empty((n, c, RMI_SAVED), dtype=torch.float64)


def _fake_rmi_backward(grad_value, labels, probs, saved):
    return torch.empty_like(probs, memory_format=torch.contiguous_format)


def _fake_attention_fuse(pred_hi, pred_lo, attn_lo, align_corners):
    return torch.empty_like(pred_hi)


def _fake_attention_fuse_backward(grad, pred_hi, pred_lo, attn_lo, align_corners):
    return torch.empty_like(pred_hi), torch.empty_like(pred_lo), torch.empty_like(attn_lo)


def _rmi_setup_context(ctx, inputs, output):
    labels, probs, _ = inputs
    ctx.save_for_backward(labels, probs, output[1])


def _rmi_backward(ctx, grad_value, grad_saved):
    labels, probs, saved = ctx.saved_tensors
    grad_probs = None
    if ctx.needs_input_grad[1]:
        grad_probs = torch.ops.segrun.rmi_lower_bound_backward(grad_value, labels, probs, saved)
    return None, grad_probs, None


def _fuse_setup_context(ctx, inputs, output):
    pred_hi, pred_lo, attn_lo, align_corners = inputs
    ctx.save_for_backward(pred_hi, pred_lo, attn_lo)
    ctx.align_corners = align_corners


def _fuse_backward(ctx, grad):
    pred_hi, pred_lo, attn_lo = ctx.saved_tensors
    grads = torch.ops.segrun.attention_fuse_backward(grad, pred_hi, pred_lo, attn_lo, ctx.align_corners)
    return (*grads, None)


def register() -> None:
    torch.library.register_fake("segrun::confusion_matrix", _fake_confusion_matrix)
    torch.library.register_fake("segrun::rmi_lower_bound_forward", _fake_rmi_forward)
    torch.library.register_fake("segrun::rmi_lower_bound_backward", _fake_rmi_backward)
    torch.library.register_fake("segrun::attention_fuse", _fake_attention_fuse)
    torch.library.register_fake("segrun::attention_fuse_backward", _fake_attention_fuse_backward)
    torch.library.register_autograd("segrun::rmi_lower_bound_forward", _rmi_backward, setup_context=_rmi_setup_context)
    torch.library.register_autograd("segrun::attention_fuse", _fuse_backward, setup_context=_fuse_setup_context)
    # Under autocast, RMI's moments are taken from float32 maps (its 9x9 algebra is float64
    # regardless); attention_fuse and confusion_matrix run in their inputs' own dtype.
    for device_type in ("cpu", "cuda"):
        torch.library.register_autocast("segrun::rmi_lower_bound_forward", device_type, torch.float32)
