"""The Region Mutual Information lower bound (Zhao et al. 2019). `rmi_lower_bound_torch` is the
specification; the compiled kernels (csrc/cuda/rmi_lower_bound.cu, for RADIUS) must reproduce it.

Every pixel of a pooled map, with its radius x radius neighbourhood, is a point in R^(r*r). Per
(image, class), with Y the label points and P the probability points, the loss is
0.5 * log det(Cov(Y) - Cov(Y,P) (Cov(P) + a I)^-1 Cov(Y,P)^T + a I), the log-volume of the
label's uncertainty left after seeing the prediction.

The original stacks 2 * r * r shifted copies of both maps for all (image, class) pairs at once and
lets autograd keep them. This version builds the stack for a group of pairs at a time, takes the
covariances with one matrix product per group, and builds it again in backward instead of keeping
it (see _NeighbourhoodCovariance); the algebra then runs in float64 with Cholesky factorisations
(solves instead of an explicit inverse).
"""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from segrun.ops import extension

POSITIVE_ALPHA = 5e-4  # added to the diagonal before the inverse and the log-det, as the original
# The study's radius and the only one the compiled op is written for (kRmiRadius in
# csrc/segrun/rmi_lower_bound.h); other radii run the PyTorch implementation.
RADIUS = 3
# Per (image, class), what the compiled forward keeps for backward: two (r*r) x (r*r) adjoints and
# two (r*r)-vectors of means (kRmiSaved).
_SAVED = 2 * RADIUS**4 + 2 * RADIUS**2


# Bytes of neighbourhood stack (float64) built at a time: the (image, class) pairs are taken in
# groups of about this size, so the stack of all pairs (900 MiB at the study's sizes) never exists
# at once. At the study's sizes on this project's 2-thread CPU (issue 16; one run, load average
# about 5), groups of 16, 64, 256 and 1024 MiB took 4.8, 4.4, 3.7 and 3.3 s forward and backward
# with 100, 216, 711 and 1851 MiB peak extra memory, the original formulation 5.6 s with 1799 MiB.
_GROUP_BYTES = 256 * 2**20


def _neighbourhoods(labels: torch.Tensor, probs: torch.Tensor, radius: int) -> torch.Tensor:
    """[k, H, W] label and probability maps -> [k, 2 r^2, points] float64: each point's radius x
    radius neighbourhood in the labels, then in the probabilities, row-major over the offsets."""
    maps = torch.stack((labels, probs), dim=1).double()
    k, _, height, width = maps.shape
    n_stride, map_stride, row_stride, column_stride = maps.stride()
    windows = maps.as_strided((k, 2, radius, radius, height - radius + 1, width - radius + 1),
                              (n_stride, map_stride, row_stride, column_stride, row_stride, column_stride))
    return windows.reshape(k, 2 * radius * radius, -1)  # the one copy


def _groups(pairs: int, points: int, radius: int) -> list[slice]:
    size = max(1, _GROUP_BYTES // (2 * radius * radius * points * 8))
    return [slice(start, start + size) for start in range(0, pairs, size)]


class _NeighbourhoodCovariance(torch.autograd.Function):
    """(labels, probs [N, C, H, W], radius) -> [N, C, 2 r^2, 2 r^2] float64: per (image, class), the
    sums over points of the products of centred neighbourhood values, labels' offsets first. Its
    backward flows to probs only. Autograd through the whole stack would keep it (1.8 GiB at the
    study's sizes); this backward builds each group's again."""

    @staticmethod
    def forward(ctx, labels, probs, radius):
        n, c, height, width = probs.shape
        labels, probs = labels.flatten(0, 1), probs.flatten(0, 1)
        ctx.save_for_backward(labels, probs)
        ctx.radius = radius
        points = (height - radius + 1) * (width - radius + 1)
        covariances = []
        for group in _groups(n * c, points, radius):
            stack = _neighbourhoods(labels[group], probs[group], radius)
            sums = stack.sum(dim=-1)
            products = stack @ stack.transpose(1, 2)
            covariances.append(products - sums.unsqueeze(-1) * sums.unsqueeze(-2) / points)
        dims = 2 * radius * radius
        return torch.cat(covariances).view(n, c, dims, dims)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        labels, probs = ctx.saved_tensors
        radius = ctx.radius
        dims = radius * radius
        n, c = grad.shape[:2]
        height, width = probs.shape[-2:]
        points = (height - radius + 1) * (width - radius + 1)
        # d/dX of sum(G * Cov) with Cov = (X - mean)(X - mean)^T is (G + G^T)(X - mean); only the
        # probability rows of X are needed.
        weights = (grad + grad.transpose(-2, -1)).flatten(0, 1)[:, dims:]
        grad_probs = torch.empty(probs.shape, dtype=torch.float64, device=probs.device)
        for group in _groups(n * c, points, radius):
            stack = _neighbourhoods(labels[group], probs[group], radius)
            means = stack.sum(dim=-1, keepdim=True) / points
            grad_points = torch.baddbmm(-(weights[group] @ means), weights[group], stack)
            # Each map pixel gets the gradient of every neighbourhood value it was copied to.
            grad_probs[group] = F.fold(grad_points, (height, width), radius).squeeze(1)
        return None, grad_probs.view(n, c, height, width).to(probs.dtype), None


def rmi_lower_bound(labels: torch.Tensor, probs: torch.Tensor, radius: int = RADIUS,
                    positive_alpha: float = POSITIVE_ALPHA) -> torch.Tensor:
    """Per-class RMI lower bound.

    labels: pooled one-hot labels [N, C, H, W] (no gradient needed).
    probs: pooled probabilities [N, C, H, W], same shape; H and W at least `radius`.
    Returns [C] in float32 (float64 for float64 probs): 0.5 * log det of the approximate conditional covariance, averaged over the
    N images and divided by radius * radius (the original's per-class value; the RMI loss sums or
    weights it over classes). Computed in float64 whatever the input dtype.
    """
    if radius == RADIUS and extension.use_extension(probs.device, "rmi_lower_bound"):
        _check(labels, probs, radius)
        maps = probs if probs.dtype == torch.float64 else probs.float()
        half_log_det, _ = torch.ops.segrun.rmi_lower_bound_forward(labels.detach().to(maps.dtype), maps,
                                                                   positive_alpha)
        per_class = half_log_det.mean(dim=0) / (radius * radius)
        return per_class if probs.dtype == torch.float64 else per_class.float()
    return rmi_lower_bound_torch(labels, probs, radius, positive_alpha)  # checks the inputs itself


def _check(labels: torch.Tensor, probs: torch.Tensor, radius: int) -> None:
    if labels.shape != probs.shape or labels.dim() != 4:
        raise ValueError(f"labels {list(labels.shape)} and probs {list(probs.shape)} must both be [N, C, H, W]")
    if min(labels.shape[-2:]) < radius:
        raise ValueError(f"maps of {list(labels.shape[-2:])} are smaller than the radius {radius}")


def rmi_lower_bound_torch(labels: torch.Tensor, probs: torch.Tensor, radius: int = RADIUS,
                          positive_alpha: float = POSITIVE_ALPHA) -> torch.Tensor:
    """The PyTorch implementation of rmi_lower_bound (its specification)."""
    _check(labels, probs, radius)
    dims = radius * radius
    covariance = _NeighbourhoodCovariance.apply(labels.detach(), probs, radius)
    label_cov, prob_cov = covariance[..., :dims, :dims], covariance[..., dims:, dims:]
    cross_cov = covariance[..., :dims, dims:]
    identity = torch.eye(dims, dtype=torch.float64, device=labels.device)
    prob_factor = torch.linalg.cholesky(prob_cov + positive_alpha * identity)
    # Cov(Y,P) Cov(P)^-1 Cov(Y,P)^T = S^T S with S = L^-1 Cov(Y,P)^T, L the Cholesky factor.
    solved = torch.linalg.solve_triangular(prob_factor, cross_cov.transpose(-2, -1), upper=False)
    conditional = label_cov - solved.transpose(-2, -1) @ solved
    factor = torch.linalg.cholesky(conditional + positive_alpha * identity)
    log_det = 2.0 * torch.log(factor.diagonal(dim1=-2, dim2=-1) + 1e-8).sum(-1)
    per_class = (0.5 * log_det).mean(dim=0) / dims
    return per_class if probs.dtype == torch.float64 else per_class.float()


def _fake_forward(labels, probs, alpha):
    n, c = probs.shape[:2]
    return probs.new_empty((n, c), dtype=torch.float64), probs.new_empty((n, c, _SAVED), dtype=torch.float64)


def _fake_backward(grad_value, labels, probs, saved):
    return torch.empty_like(probs, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    labels, probs, _ = inputs
    ctx.save_for_backward(labels, probs, output[1])


def _backward(ctx, grad_value, grad_saved):
    labels, probs, saved = ctx.saved_tensors
    grad_probs = None
    if ctx.needs_input_grad[1]:
        grad_probs = torch.ops.segrun.rmi_lower_bound_backward(grad_value, labels, probs, saved)
    return None, grad_probs, None


@extension.after_loading
def _register() -> None:
    """Shapes for fake tensors (torch.compile, meta), the autograd formula and the autocast rule:
    under autocast the moments are taken from float32 maps (the algebra is float64 regardless)."""
    torch.library.register_fake("segrun::rmi_lower_bound_forward", _fake_forward)
    torch.library.register_fake("segrun::rmi_lower_bound_backward", _fake_backward)
    torch.library.register_autograd("segrun::rmi_lower_bound_forward", _backward, setup_context=_setup_context)
    for device_type in ("cpu", "cuda"):
        torch.library.register_autocast("segrun::rmi_lower_bound_forward", device_type, torch.float32)
