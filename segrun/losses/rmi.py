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

from segrun.losses.base import OptionError, PixelLoss, check_choice, check_number
from segrun.ops import rmi_lower_bound

PROBABILITY_FLOOR = 1e-6
POOLS = ("max", "avg", "interpolate")
LAMBDA_MODES = ("weighted", "additive")


class RMI(PixelLoss):
    """Options (the study's values as defaults): `radius` of the square neighbourhood (3),
    `pool` ("max"; NVIDIA's code: "avg"), `pool_size` and `pool_stride` (3; equal for max and avg),
    `weight_lambda` (0.5) and `lambda_mode` ("weighted" or "additive", see above)."""

    def __init__(self, ignore_index: int = 255, radius: int = 3, pool: str = "max", pool_size: int = 3,
                 pool_stride: int = 3, weight_lambda: float = 0.5, lambda_mode: str = "weighted"):
        super().__init__(ignore_index)
        check_number("radius", radius, 1, 10, integer=True)
        check_choice("pool", pool, POOLS)
        check_number("pool_size", pool_size, 1, integer=True)
        check_number("pool_stride", pool_stride, 1, integer=True)
        if pool in ("max", "avg") and pool_size != pool_stride:
            raise OptionError("pool_stride", f"{pool} pooling needs the stride equal to pool_size ({pool_size}), "
                              f"as the original RMI requires; got {pool_stride}")
        check_number("weight_lambda", weight_lambda, 0.0, 1.0)
        check_choice("lambda_mode", lambda_mode, LAMBDA_MODES)
        self.radius = radius
        self.pool = pool
        self.pool_size = pool_size
        self.pool_stride = pool_stride
        self.weight_lambda = weight_lambda
        self.lambda_mode = lambda_mode
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
