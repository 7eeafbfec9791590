"""What a user would otherwise run for each op: the peers the op benchmark measures against."""
import torch
import torch.nn.functional as F

RMI_ALPHA = 5e-4


def rmi_original(labels: torch.Tensor, probs: torch.Tensor, radius: int = 3, alpha: float = RMI_ALPHA) -> torch.Tensor:
    """The RMI lower bound as the original implementation computes it (and tests/reference
    was made with): 2 * radius^2 shifted copies of the maps stacked, covariances by matmul in
    float64, an explicit inverse, a Cholesky log-det. Per-class value [C]."""
    height, width = labels.shape[-2] - radius + 1, labels.shape[-1] - radius + 1

    def stacked(maps):
        views = [maps[..., y:y + height, x:x + width] for y in range(radius) for x in range(radius)]
        vectors = torch.stack(views, dim=2).flatten(3).double()
        return vectors - vectors.mean(dim=3, keepdim=True)

    label_vectors, prob_vectors = stacked(labels.detach()), stacked(probs)
    eye = torch.eye(radius * radius, dtype=torch.float64, device=probs.device)
    prob_cov_inv = torch.inverse(prob_vectors @ prob_vectors.transpose(2, 3) + alpha * eye)
    label_prob = label_vectors @ prob_vectors.transpose(2, 3)
    conditional = label_vectors @ label_vectors.transpose(2, 3) - label_prob @ prob_cov_inv @ label_prob.transpose(2, 3)
    factor = torch.linalg.cholesky(conditional + alpha * eye)
    log_det = 2 * torch.log(factor.diagonal(dim1=-2, dim2=-1) + 1e-8).sum(-1)
    return ((0.5 * log_det).mean(0) / (radius * radius)).float()


def attention_fuse_eager(pred_hi, pred_lo, attn_lo, align_corners=True):
    """Interpolate, multiply, add: the multi-scale fusion as the original model code writes it."""
    size = pred_hi.shape[-2:]
    up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=align_corners)
    return up(attn_lo * pred_lo) + (1 - up(attn_lo)) * pred_hi
