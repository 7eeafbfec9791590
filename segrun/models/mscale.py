"""Hierarchical multi-scale attention over HRNet-OCR (Tao et al. 2020, NVIDIA's MscaleOCR).

Each scale's OCR features also give a per-pixel attention (sigmoid) that says how much to trust
that scale. Training runs the image at 0.5x and 1.0x and fuses them; inference fuses any list of
scales from the highest down, always through segrun.ops.attention_fuse for the upscaling step.
"""
from collections import OrderedDict

import torch
from torch import nn

from segrun.layers import conv_bn_relu, rescale, resize
from segrun.models.base import ScaleFusingModel
from segrun.models.hrnet import concat_branches, create_backbone
from segrun.models.ocr import OCRHead
from segrun.ops import attention_fuse

TRAIN_LOW_SCALE = 0.5


def attention_head(in_channels: int, bottleneck_channels: int = 256) -> nn.Sequential:
    """3x3 conv-BN-ReLU to 256, 3x3 conv-BN-ReLU, 1x1 conv to 1, sigmoid, under NVIDIA's layer names."""
    layers = [
        *conv_bn_relu(in_channels, bottleneck_channels, 3),
        *conv_bn_relu(bottleneck_channels, bottleneck_channels, 3),
        nn.Conv2d(bottleneck_channels, 1, 1, bias=False),
        nn.Sigmoid(),
    ]
    names = ("conv0", "bn0", "re0", "conv1", "bn1", "re1", "conv2", "sig")
    return nn.Sequential(OrderedDict(zip(names, layers, strict=True)))


class HRNetMscaleOCR(ScaleFusingModel):
    """HRNet-W48 + OCR + scale attention with 19 classes has 72,143,430 parameters.

    With mscale_training (the default) forward returns [joint, joint_aux, pred_0.5x, pred_1.0x]:
    the attention-fused 0.5x/1.0x prediction and auxiliary prediction, then each scale's own
    prediction at the input size. Without it, forward is single-scale OCR: [main, aux].
    """

    def __init__(self, num_classes: int, backbone: str = "hrnet_w48", align_corners: bool = True,
                 mscale_training: bool = True):
        super().__init__()
        self.align_corners = align_corners
        self.mscale_training = mscale_training
        self.backbone = create_backbone(backbone, align_corners)
        self.ocr = OCRHead(sum(self.backbone.feature_info.channels()), num_classes)
        self.scale_attn = attention_head(512)

    @classmethod
    def output_names(cls, mscale_training: bool = True, **options) -> tuple[str, ...]:
        return ("joint", "joint_aux", "pred_0.5x", "pred_1.0x") if mscale_training else ("main", "aux")

    def single_scale(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, aux logits, attention), each at the size of `images`."""
        logits, aux, ocr_features = self.ocr(concat_branches(self.backbone(images), self.align_corners))
        attention = self.scale_attn(ocr_features)
        size = images.shape[-2:]
        return tuple(resize(t, size, self.align_corners) for t in (logits, aux, attention))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if not self.mscale_training:
            logits, aux, _ = self.single_scale(images)
            return [logits, aux]
        logits_lo, aux_lo, attention_lo = self.single_scale(rescale(images, TRAIN_LOW_SCALE, self.align_corners))
        logits_hi, aux_hi, _ = self.single_scale(images)
        return [
            attention_fuse(logits_hi, logits_lo, attention_lo, self.align_corners),
            attention_fuse(aux_hi, aux_lo, attention_lo, self.align_corners),
            resize(logits_lo, logits_hi.shape[-2:], self.align_corners),
            logits_hi,
        ]

    def scale_attention(self, images: torch.Tensor, scales) -> list[torch.Tensor]:
        return [resize(self.single_scale(rescale(images, scale, self.align_corners))[2], images.shape[-2:],
                       self.align_corners) for scale in scales]

    def predict_scales(self, images: torch.Tensor, scales) -> torch.Tensor:
        """Hierarchical inference over `scales` (which must include 1.0), from the highest down:
        a scale s >= 1 after a larger one: joint = a * p_s + (1 - a) * down(joint); a scale
        s < 1: joint = up(a * p_s) + (1 - up(a)) * joint. Returns logits at the input size."""
        if 1.0 not in scales:
            raise ValueError(f"multi-scale attention needs 1.0 among the scales, got {list(scales)}")
        joint = None
        for scale in sorted(scales, reverse=True):
            logits, _, attention = self.single_scale(rescale(images, scale, self.align_corners))
            if joint is None:
                joint = logits
            elif scale >= 1.0:
                joint = attention * logits + (1 - attention) * resize(joint, logits.shape[-2:], self.align_corners)
            else:
                joint = attention_fuse(joint, logits, attention, self.align_corners)
        return joint
