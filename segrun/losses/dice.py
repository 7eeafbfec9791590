"""Dice-based and top-k losses of the study.

- `dc`: multiclass soft Dice over the whole batch: per class 1 - 2 sum(p t) / max(sum(p + t), 1e-7)
  (with smoothing s: (2 sum(p t) + s) / max(sum(p + t) + s, 1e-7)), 0 for a class absent from the
  target, averaged over the classes.
- `dc_ce`: nnU-Net's Dice + CE: CE plus the negative batch Dice (2tp + s) / (2tp + fp + fn + s + 1e-8)
  averaged over the classes, the background class 0 left out by default.
- `topk`: nnU-Net's TopK: the mean of the largest k% per-pixel cross entropies (k counts every pixel;
  ignored pixels contribute 0).
- `dc_topk`: TopK plus the nnU-Net Dice term.
Ignored pixels are masked out of probabilities and targets everywhere, except in dc_topk's TopK term
with `ignored_as_class_zero` (the original's behaviour).
"""
import torch
import torch.nn.functional as F

from segrun.losses.base import PixelLoss, check_choice, check_number, cross_entropy


def first_counted_class(smooth: float, background: bool) -> int:
    """Checks the Dice options `smooth` (>= 0) and `background` (count class 0 in the Dice term)."""
    check_number("smooth", smooth, 0.0)
    check_choice("background", background, (True, False))
    return 0 if background else 1


class Dice(PixelLoss):
    def __init__(self, ignore_index: int = 255, smooth: float = 0.0, background: bool = True):
        super().__init__(ignore_index)
        self.first_class = first_counted_class(smooth, background)
        self.smooth = smooth

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
    def __init__(self, ignore_index: int = 255, smooth: float = 0.0, background: bool = False):
        super().__init__(ignore_index)
        self.first_class = first_counted_class(smooth, background)
        self.smooth = smooth

    def pixel_term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, target, self.ignore_index)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot, mask = self.valid_one_hot(target, logits.shape[1])
        return self.pixel_term(logits, target) + batch_dice_term(logits, one_hot, mask, self.smooth, self.first_class)


def checked_percent(percent: float) -> float:
    """The TopK option `percent`: the share of pixels with the largest cross entropy, in (0, 100]."""
    check_number("percent", percent, 0.0, 100.0, low_open=True)
    return percent


def top_k_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, percent: float) -> torch.Tensor:
    per_pixel = F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction="none").flatten()
    count = max(1, int(per_pixel.numel() * percent / 100))
    return per_pixel.topk(count, sorted=False).values.mean()


class TopK(PixelLoss):
    def __init__(self, ignore_index: int = 255, percent: float = 10.0):
        super().__init__(ignore_index)
        self.percent = checked_percent(percent)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return top_k_cross_entropy(logits, target, self.ignore_index, self.percent)


class DiceTopK(DiceCE):
    """DiceCE with TopK in place of the plain cross entropy."""

    def __init__(self, ignore_index: int = 255, percent: float = 10.0, smooth: float = 0.0, background: bool = False,
                 ignored_as_class_zero: bool = False):
        super().__init__(ignore_index, smooth, background)
        self.percent = checked_percent(percent)
        # The original (nnU-Net's DC_and_topk_loss, as the study ran it) relabels ignored pixels as
        # class 0 before its TopK term, so they are trained towards class 0 (road on Cityscapes);
        # segrun masks them unless this reproduces the study's row.
        check_choice("ignored_as_class_zero", ignored_as_class_zero, (True, False))
        self.ignored_as_class_zero = ignored_as_class_zero

    def pixel_term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.ignored_as_class_zero:
            target = torch.where(target == self.ignore_index, 0, target)
        return top_k_cross_entropy(logits, target, self.ignore_index, self.percent)
