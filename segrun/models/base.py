"""The interface every registered model implements, declared once.

A model is a plain nn.Module built as Model(num_classes, backbone=..., **options). Its forward takes
images [N, 3, H, W] and returns a list of logits [N, classes, H, W], one per output, named by the
class method `output_names` (callable without building the model). A model that fuses several
scales itself at test time subclasses ScaleFusingModel; inference averages the scales of the others.
"""
import abc

import torch
from torch import nn


class SegmentationModel(nn.Module, metaclass=abc.ABCMeta):
    align_corners: bool  # how the model and inference resize its tensors

    @classmethod
    @abc.abstractmethod
    def output_names(cls, **options) -> tuple[str, ...]:
        """Names of forward's outputs, in order, for the model built with these options."""


class ScaleFusingModel(SegmentationModel):
    """A model whose test-time multi-scale prediction is its own (e.g. by learned attention)."""

    @abc.abstractmethod
    def predict_scales(self, images: torch.Tensor, scales) -> torch.Tensor:
        """Logits [N, classes, H, W] at the input's size, fused over `scales` (which include 1.0)."""

    @abc.abstractmethod
    def scale_attention(self, images: torch.Tensor, scales) -> list[torch.Tensor]:
        """Per scale, the attention [N, 1, H, W] in [0, 1] (at the input's size) that the fusion
        gives the prediction at that scale."""
