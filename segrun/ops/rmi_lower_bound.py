"""The Region Mutual Information lower bound (Zhao et al. 2019). `rmi_lower_bound_torch` is the
specification; the compiled kernels (csrc/cuda/rmi.cu, radius 3) must reproduce it.

Every pixel of a pooled map, with its radius x radius neighbourhood, is a point in R^(r*r) (9-d
for radius 3). Per (image, class), with Y the label points and P the probability points, the
loss is 0.5 * log det(Cov(Y) - Cov(Y,P) (Cov(P) + a I)^-1 Cov(Y,P)^T + a I), the log-volume of
the label's uncertainty left after seeing the prediction.

The original stacks 2 * r * r shifted copies of both maps and multiplies them. This version
accumulates the (r*r) x (r*r) second moments from products of shifted views, so no stack is ever
materialised and autograd keeps only views; the algebra then runs in float64 with Cholesky
factorisations (solves instead of an explicit inverse).
"""
import torch

from segrun.ops import extension

POSITIVE_ALPHA = 5e-4  # added to the diagonal before the inverse and the log-det, as the original


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


def rmi_lower_bound(labels: torch.Tensor, probs: torch.Tensor, radius: int = 3,
                    positive_alpha: float = POSITIVE_ALPHA) -> torch.Tensor:
    """Per-class RMI lower bound.

    labels: pooled one-hot labels [N, C, H, W] (no gradient needed).
    probs: pooled probabilities [N, C, H, W], same shape; H and W at least `radius`.
    Returns [C] in float32 (float64 for float64 probs): 0.5 * log det of the approximate conditional covariance, averaged over the
    N images and divided by radius * radius (the original's per-class value; the RMI loss sums or
    weights it over classes). Computed in float64 whatever the input dtype.
    """
    # The kernels are written for the study's radius 3; other radii run the PyTorch version.
    if radius == 3 and extension.use_extension(probs.device, "rmi_lower_bound"):
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


def rmi_lower_bound_torch(labels: torch.Tensor, probs: torch.Tensor, radius: int = 3,
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
