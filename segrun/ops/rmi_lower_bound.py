"""The Region Mutual Information lower bound (Zhao et al. 2019). `rmi_lower_bound_torch` is the
specification; the compiled kernels (csrc/cuda/rmi_lower_bound.cu, for RADIUS) must reproduce it.

Every pixel of a pooled map, with its radius x radius neighbourhood, is a point in R^(r*r). Per
(image, class), with Y the label points and P the probability points, the loss is
0.5 * log det(Cov(Y) - Cov(Y,P) (Cov(P) + a I)^-1 Cov(Y,P)^T + a I), the log-volume of the
label's uncertainty left after seeing the prediction.

The original stacks 2 * r * r shifted copies of both maps and multiplies them. This version
accumulates the (r*r) x (r*r) second moments from products of shifted views, so no stack is ever
materialised and autograd keeps only views; the algebra then runs in float64 with Cholesky
factorisations (solves instead of an explicit inverse).
"""
import torch

from segrun.ops import extension

POSITIVE_ALPHA = 5e-4  # added to the diagonal before the inverse and the log-det, as the original
# The study's radius and the only one the compiled op is written for (kRmiRadius in
# csrc/segrun/rmi_lower_bound.h); other radii run the PyTorch implementation.
RADIUS = 3
# Per (image, class), what the compiled forward keeps for backward: two (r*r) x (r*r) adjoints and
# two (r*r)-vectors of means (kRmiSaved).
_SAVED = 2 * RADIUS**4 + 2 * RADIUS**2


def _shifted_views(maps: torch.Tensor, radius: int) -> list[torch.Tensor]:
    """The radius*radius views maps[..., y:y+h', x:x+w'], row-major over (y, x)."""
    height, width = maps.shape[-2] - radius + 1, maps.shape[-1] - radius + 1
    return [maps[..., y:y + height, x:x + width] for y in range(radius) for x in range(radius)]


def _centred_moments(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """[N, C, d, d] with entry (i, j) = sum over points of (a_i - mean a_i)(b_j - mean b_j)."""
    points = a[0].shape[-1] * a[0].shape[-2]
    sums_a = torch.stack([v.sum(dim=(-2, -1)) for v in a], dim=-1)
    sums_b = torch.stack([v.sum(dim=(-2, -1)) for v in b], dim=-1)
    products = torch.stack([torch.stack([(u * v).sum(dim=(-2, -1)) for v in b], dim=-1) for u in a], dim=-2)
    return products - sums_a.unsqueeze(-1) * sums_b.unsqueeze(-2) / points


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
    label_views = _shifted_views(labels.detach().double(), radius)
    prob_views = _shifted_views(probs.double(), radius)
    label_cov = _centred_moments(label_views, label_views)
    prob_cov = _centred_moments(prob_views, prob_views)
    cross_cov = _centred_moments(label_views, prob_views)
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
