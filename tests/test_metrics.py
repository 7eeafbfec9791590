import math

import torch

from segrun.metrics import MeanIoU, format_iou_table, scores_as_json, scores_from_confusion


def test_cityscapes_convention_for_absent_classes():
    # class 0: 2 right, 1 predicted as 1; class 1: never in the ground truth but predicted once;
    # class 2: neither in the ground truth nor predicted.
    confusion = torch.tensor([[2, 1, 0], [0, 0, 0], [0, 0, 0]])
    scores = scores_from_confusion(confusion)
    iou = scores["per_class_iou"]
    assert float(iou[0]) == 2 / 3 and float(iou[1]) == 0.0 and math.isnan(float(iou[2]))
    assert float(scores["mIoU"]) == (2 / 3 + 0) / 2
    assert float(scores["pixel_accuracy"]) == 2 / 3


def test_metric_accumulates_over_batches():
    metric = MeanIoU(num_classes=2)
    target = torch.tensor([[[0, 1], [1, 255]]])
    logits = torch.tensor([[[[5.0, 0.0], [0.0, 0.0]], [[0.0, 5.0], [5.0, 5.0]]]])
    metric.update(logits, target)
    metric.update(logits, target)
    assert metric.confusion.tolist() == [[2, 0], [0, 4]]
    assert float(metric.compute()["mIoU"]) == 1.0


def test_json_form_and_table():
    scores = scores_as_json(scores_from_confusion(torch.tensor([[1, 0], [0, 0]])), ["road", "sky"])
    assert scores == {"mIoU": 1.0, "pixel_accuracy": 1.0, "per_class_iou": {"road": 1.0, "sky": None}}
    table = format_iou_table(scores)
    assert "road" in table and "n/a" in table and "mIoU" in table
