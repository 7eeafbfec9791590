"""Dice-based and top-k losses of the study.

- `dc`: multiclass soft Dice over the whole batch: per class 1 - 2 sum(p t) / max(sum(p + t), 1e-7)
  (with smoothing s: (2 sum(p t) + s) / max(sum(p + t) + s, 1e-7)), 0 for a class absent from the
  target, averaged over the classes.
- `dc_ce`: nnU-Net's Dice + CE: CE plus the negative batch Dice (2tp + s) / (2tp + fp + fn + s + 1e-8)
  averaged over the classes, the background class 0 left out by default.
- `topk`: nnU-Net's TopK: the mean of the largest k% per-pixel cross entropies (k counts every pixel;
  ignored pixels contribute 0).
- `dc_topk`: TopK plus the nnU-Net Dice term.
Ignored pixels are masked out of probabilities and targets everywhere.
"""
import torch
import torch.nn.functional as F

from segrun.losses.base import PixelLoss, cross_entropy


class Dice(PixelLoss):
    options = ("dice_smooth", "dice_background")

    def __init__(self, ignore_index: int = 255, dice_smooth: float = 0.0, dice_background: bool = True):
        super().__init__(ignore_index)
        self.smooth = dice_smooth
        self.first_class = 0 if dice_background else 1

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot, mask = self.valid_one_hot(target, logits.shape[1])
        probs = logits.softmax(1) * mask
        intersection = (probs * one_hot).sum(dim=(0, 2, 3))
        total = (probs + one_hot).sum(dim=(0, 2, 3))
        dice = (2 * intersection + self.smooth) / (total + self.smooth).clamp(min=1e-7)
        present = one_hot.sum(dim=(0, 2, 3)) > 0
        return class_mean(torch.where(present, 1 - dice, torch.zeros_like(dice)), self.first_class)


def class_mean(per_class: torch.Tensor, first_class: int) -> torch.Tensor:
    """Mean over classes first_class..C-1; 0 (with a graph) when that leaves none (C = 1, no background)."""
    counted = per_class[first_class:]
    return counted.mean() if counted.numel() else per_class.sum() * 0.0


def batch_dice_term(logits: torch.Tensor, one_hot: torch.Tensor, mask: torch.Tensor, smooth: float,
                    first_class: int) -> torch.Tensor:
    """nnU-Net's SoftDiceLoss with batch Dice: -mean over classes of (2tp + s) / (2tp + fp + fn + s + 1e-8)."""
    probs = logits.softmax(1)
    true_positive = (probs * one_hot * mask).sum(dim=(0, 2, 3))
    false_positive = (probs * (1 - one_hot) * mask).sum(dim=(0, 2, 3))
    false_negative = ((1 - probs) * one_hot * mask).sum(dim=(0, 2, 3))
    dice = (2 * true_positive + smooth) / (2 * true_positive + false_positive + false_negative + smooth + 1e-8)
    return -class_mean(dice, first_class)


class DiceCE(PixelLoss):
    options = ("dice_smooth", "dice_background")

    def __init__(self, ignore_index: int = 255, dice_smooth: float = 0.0, dice_background: bool = False):
        super().__init__(ignore_index)
        self.smooth = dice_smooth
        self.first_class = 0 if dice_background else 1

    def pixel_term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, target, self.ignore_index)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot, mask = self.valid_one_hot(target, logits.shape[1])
        return self.pixel_term(logits, target) + batch_dice_term(logits, one_hot, mask, self.smooth, self.first_class)


def top_k_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, percent: float) -> torch.Tensor:
    per_pixel = F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction="none").flatten()
    count = max(1, int(per_pixel.numel() * percent / 100))
    return per_pixel.topk(count, sorted=False).values.mean()


class TopK(PixelLoss):
    options = ("topk_percent",)

    def __init__(self, ignore_index: int = 255, topk_percent: float = 10.0):
        super().__init__(ignore_index)
        self.percent = topk_percent

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return top_k_cross_entropy(logits, target, self.ignore_index, self.percent)


class DiceTopK(DiceCE):
    """DiceCE with TopK in place of the plain cross entropy."""

    options = ("topk_percent", "dice_smooth", "dice_background")

    def __init__(self, ignore_index: int = 255, topk_percent: float = 10.0, dice_smooth: float = 0.0,
                 dice_background: bool = False):
        super().__init__(ignore_index, dice_smooth, dice_background)
        self.percent = topk_percent

    def pixel_term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return top_k_cross_entropy(logits, target, self.ignore_index, self.percent)
