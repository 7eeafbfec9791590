"""Confusion-matrix mIoU as a torchmetrics Metric, so counts are summed across processes."""
import torch
from torchmetrics import Metric

from segrun.ops import confusion_matrix


def scores_from_confusion(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """IoU per class, their mean and pixel accuracy, by the official Cityscapes convention: a
    class with neither ground truth nor prediction has IoU NaN and is left out of the mean; a
    class predicted but absent from the ground truth scores 0."""
    confusion = confusion.double()
    true_positive = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    iou = torch.where(union > 0, true_positive / union.clamp(min=1), torch.full_like(union, float("nan")))
    total = confusion.sum()
    return {
        "mIoU": iou.nanmean(),
        "pixel_accuracy": true_positive.sum() / total if total > 0 else torch.tensor(float("nan"), dtype=torch.float64),
        "per_class_iou": iou,
    }


class MeanIoU(Metric):
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = 255):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("confusion", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.confusion += confusion_matrix(logits.detach(), target, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, torch.Tensor]:
        # compute() sees the state summed over processes; afterwards the local state is restored.
        return {**scores_from_confusion(self.confusion), "confusion_matrix": self.confusion.clone()}


def scores_as_json(scores: dict[str, torch.Tensor], class_names) -> dict:
    """Plain-JSON form: NaN (a class absent from both ground truth and prediction) becomes null."""
    def number(value):
        value = float(value)
        return None if value != value else value

    return {
        "mIoU": number(scores["mIoU"]),
        "pixel_accuracy": number(scores["pixel_accuracy"]),
        "per_class_iou": {name: number(iou) for name, iou in zip(class_names, scores["per_class_iou"])},
    }


def format_iou_table(scores_json: dict) -> str:
    """The per-class IoU table printed after validation."""
    width = max(len(name) for name in [*scores_json["per_class_iou"], "pixel_accuracy"])
    lines = [f"{'class':<{width}}  IoU", f"{'-' * width}  ------"]
    for name, iou in scores_json["per_class_iou"].items():
        lines.append(f"{name:<{width}}  {'  n/a' if iou is None else f'{iou:.4f}'}")
    lines.append(f"{'-' * width}  ------")
    for key in ("mIoU", "pixel_accuracy"):
        value = scores_json[key]
        lines.append(f"{key:<{width}}  {'  n/a' if value is None else f'{value:.4f}'}")
    return "\n".join(lines)
