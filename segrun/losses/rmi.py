"""Region Mutual Information loss (Zhao et al. 2019) in its sigmoid form, as used by NVIDIA's
semantic-segmentation and the HRNet/OCR comparison study:

    lambda * BCE + (1 - lambda) * RMI        (lambda mode "weighted", the default)
    BCE + lambda * RMI                       (lambda mode "additive")

BCE is binary cross entropy with logits summed over valid pixels and classes, divided by the
number of valid pixels + 1. RMI is the sum over classes of segrun.ops.rmi_lower_bound on the
pooled one-hot labels and pooled probabilities sigmoid(logits) * valid + 1e-6.
"""
import torch
import torch.nn.functional as F

from segrun.losses.base import OptionError, PixelLoss
from segrun.ops import rmi_lower_bound

PROBABILITY_FLOOR = 1e-6
POOLS = ("max", "avg", "interpolate")
LAMBDA_MODES = ("weighted", "additive")


class RMI(PixelLoss):
    options = ("rmi_radius", "rmi_pool", "rmi_pool_size", "rmi_pool_stride", "rmi_lambda", "rmi_lambda_mode")

    def __init__(self, ignore_index: int = 255, rmi_radius: int = 3, rmi_pool: str = "max", rmi_pool_size: int = 3,
                 rmi_pool_stride: int = 3, rmi_lambda: float = 0.5, rmi_lambda_mode: str = "weighted"):
        super().__init__(ignore_index)
        check_rmi_options(rmi_radius, rmi_pool, rmi_pool_size, rmi_pool_stride, rmi_lambda, rmi_lambda_mode)
        self.radius = rmi_radius
        self.pool = rmi_pool
        self.pool_size = rmi_pool_size
        self.pool_stride = rmi_pool_stride
        self.weight_lambda = rmi_lambda
        self.lambda_mode = rmi_lambda_mode
        self.register_buffer("class_weights", None)

    def _pooled(self, maps: torch.Tensor, nearest: bool) -> torch.Tensor:
        if self.pool_stride <= 1:
            return maps
        if self.pool == "max":
            return F.max_pool2d(maps, self.pool_size, self.pool_stride, padding=self.pool_size // 2)
        if self.pool == "avg":
            return F.avg_pool2d(maps, self.pool_size, self.pool_stride, padding=self.pool_size // 2)
        size = (maps.shape[-2] // self.pool_stride, maps.shape[-1] // self.pool_stride)
        if nearest:
            return F.interpolate(maps, size=size, mode="nearest")
        return F.interpolate(maps, size=size, mode="bilinear", align_corners=True)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        one_hot, mask = self.valid_one_hot(target, num_classes)
        pos_weight = None if self.class_weights is None else self.class_weights.view(-1, 1, 1)
        bce = F.binary_cross_entropy_with_logits(logits, one_hot, weight=mask, pos_weight=pos_weight, reduction="sum")
        bce = bce / (mask.sum() + 1.0)
        probs = torch.sigmoid(logits) * mask + PROBABILITY_FLOOR
        per_class = rmi_lower_bound(self._pooled(one_hot, nearest=True), self._pooled(probs, nearest=False), self.radius)
        if self.class_weights is not None:
            per_class = per_class * self.class_weights
        rmi = per_class.sum()
        if self.lambda_mode == "weighted":
            return self.weight_lambda * bce + (1 - self.weight_lambda) * rmi
        return bce + self.weight_lambda * rmi


class WeightedRMI(RMI):
    """RMI with class weights: the BCE's pos_weight and a factor on each class's RMI term."""

    takes_class_weights = True

    def __init__(self, class_weights, ignore_index: int = 255, **rmi_options):
        super().__init__(ignore_index, **rmi_options)
        self.class_weights = torch.as_tensor(class_weights, dtype=torch.float32)


def check_rmi_options(radius, pool, pool_size, pool_stride, weight_lambda, lambda_mode) -> None:
    """OptionError naming the spec key of the first invalid option."""
    if not 1 <= radius <= 10:
        raise OptionError("rmi_radius", f"expected 1 to 10, got {radius}")
    if pool not in POOLS:
        raise OptionError("rmi_pool", f"expected one of {', '.join(POOLS)}, got {pool!r}")
    if pool_size < 1 or pool_stride < 1:
        raise OptionError("rmi_pool_size", f"pool size and stride must be >= 1, got {pool_size} and {pool_stride}")
    if pool in ("max", "avg") and pool_size != pool_stride:
        raise OptionError("rmi_pool_stride", f"{pool} pooling needs the stride equal to rmi_pool_size ({pool_size}), "
                          f"as the original RMI requires; got {pool_stride}")
    if not 0 <= weight_lambda <= 1:
        raise OptionError("rmi_lambda", f"expected a number in [0, 1], got {weight_lambda}")
    if lambda_mode not in LAMBDA_MODES:
        raise OptionError("rmi_lambda_mode", f"expected one of {', '.join(LAMBDA_MODES)}, got {lambda_mode!r}")
