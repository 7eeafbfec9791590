"""HRNet + Object-Contextual Representations (Yuan et al. 2020), as HRNet-OCR and NVIDIA's
OCR_block: soft object regions from an auxiliary head, one context vector per class gathered
from the pixel features, and pixel-object attention.

The head's module names follow NVIDIA's OCR_block (ocr.conv3x3_ocr, ocr.aux_head, ...), so
published checkpoints map onto it by key (segrun.models.weights).
"""
import torch
import torch.nn.functional as F
from torch import nn

from segrun.layers import resize
from segrun.models.base import SegmentationModel
from segrun.models.hrnet import concat_branches, create_backbone


def bn_relu_after(conv: nn.Conv2d) -> nn.Sequential:
    """conv, then BatchNorm and ReLU in a nested Sequential: the reference's key layout
    (`<name>.0.weight`, `<name>.1.0.weight` for the BN)."""
    return nn.Sequential(conv, nn.Sequential(nn.BatchNorm2d(conv.out_channels), nn.ReLU()))


class SpatialGather(nn.Module):
    """One context vector per class: pixel features averaged with softmax(aux logits) over space."""

    def forward(self, features: torch.Tensor, region_logits: torch.Tensor) -> torch.Tensor:
        batch, classes = region_logits.shape[:2]
        weights = F.softmax(region_logits.reshape(batch, classes, -1), dim=2)  # [N, K, HW]
        pixels = features.reshape(batch, features.shape[1], -1).permute(0, 2, 1)  # [N, HW, C]
        return torch.matmul(weights, pixels).permute(0, 2, 1).unsqueeze(3)  # [N, C, K, 1]


class ObjectAttention(nn.Module):
    """Each pixel attends over the class context vectors (queries from pixels, keys and values from
    objects), scaled dot product with key_channels ** -0.5."""

    def __init__(self, in_channels: int, key_channels: int):
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = nn.Sequential(
            *bn_relu_after(nn.Conv2d(in_channels, key_channels, 1, bias=False)),
            *bn_relu_after(nn.Conv2d(key_channels, key_channels, 1, bias=False)),
        )
        self.f_object = nn.Sequential(
            *bn_relu_after(nn.Conv2d(in_channels, key_channels, 1, bias=False)),
            *bn_relu_after(nn.Conv2d(key_channels, key_channels, 1, bias=False)),
        )
        self.f_down = bn_relu_after(nn.Conv2d(in_channels, key_channels, 1, bias=False))
        self.f_up = bn_relu_after(nn.Conv2d(key_channels, in_channels, 1, bias=False))

    def forward(self, features: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = features.shape
        query = self.f_pixel(features).reshape(batch, self.key_channels, -1).permute(0, 2, 1)
        key = self.f_object(objects).reshape(batch, self.key_channels, -1)
        value = self.f_down(objects).reshape(batch, self.key_channels, -1).permute(0, 2, 1)
        similarity = F.softmax(torch.matmul(query, key) * self.key_channels ** -0.5, dim=-1)
        context = torch.matmul(similarity, value).permute(0, 2, 1).reshape(batch, self.key_channels, height, width)
        return self.f_up(context)


class SpatialOCR(nn.Module):
    """Object-contextual representation concatenated with the pixel features, fused by 1x1 conv.
    With `aspp`, its output over the pixel features joins the concatenation: [context, aspp,
    features] (the study's OCR+ASPP)."""

    def __init__(self, in_channels: int, key_channels: int, out_channels: int, dropout: float,
                 aspp: nn.Module | None = None):
        super().__init__()
        self.object_context_block = ObjectAttention(in_channels, key_channels)
        self.aspp = aspp
        fused_channels = 2 * in_channels + (0 if aspp is None else aspp.out_channels)
        self.conv_bn_dropout = nn.Sequential(
            *bn_relu_after(nn.Conv2d(fused_channels, out_channels, 1, bias=False)),
            nn.Dropout2d(dropout),
        )

    def forward(self, features: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        parts = [self.object_context_block(features, objects), features]
        if self.aspp is not None:
            parts.insert(1, self.aspp(features))
        return self.conv_bn_dropout(torch.cat(parts, dim=1))


class OCRHead(nn.Module):
    """3x3 conv to 512 channels, auxiliary head (soft object regions), gather, object attention
    (key 256, mid 512), dropout 0.05, classifier. Returns (logits, aux logits, OCR features).
    `context_aspp` (a module over the 512-channel features with an `out_channels` attribute) joins
    the object attention's fusion, as in the study's OCR+ASPP."""

    def __init__(self, in_channels: int, num_classes: int, mid_channels: int = 512, key_channels: int = 256,
                 context_aspp: nn.Module | None = None):
        super().__init__()
        self.conv3x3_ocr = bn_relu_after(nn.Conv2d(in_channels, mid_channels, 3, padding=1))
        self.ocr_gather_head = SpatialGather()
        self.ocr_distri_head = SpatialOCR(mid_channels, key_channels, mid_channels, dropout=0.05, aspp=context_aspp)
        self.cls_head = nn.Conv2d(mid_channels, num_classes, 1)
        self.aux_head = nn.Sequential(
            *bn_relu_after(nn.Conv2d(in_channels, in_channels, 1)),
            nn.Conv2d(in_channels, num_classes, 1),
        )

    def forward(self, high_level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.conv3x3_ocr(high_level)
        aux = self.aux_head(high_level)
        ocr_features = self.ocr_distri_head(features, self.ocr_gather_head(features, aux))
        return self.cls_head(ocr_features), aux, ocr_features


class HRNetOCR(SegmentationModel):
    """HRNetV2 branches -> OCR head. Outputs [main, aux] at the input's size. HRNet-W48 + OCR with
    19 classes has 70,372,678 parameters."""

    def __init__(self, num_classes: int, backbone: str = "hrnet_w48", align_corners: bool = True):
        super().__init__()
        self.align_corners = align_corners
        self.backbone = create_backbone(backbone, align_corners)
        self.ocr = OCRHead(sum(self.backbone.feature_info.channels()), num_classes)

    @classmethod
    def output_names(cls, **options) -> tuple[str, ...]:
        return ("main", "aux")

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        logits, aux, _ = self.ocr(concat_branches(self.backbone(images), self.align_corners))
        size = images.shape[-2:]
        return [resize(logits, size, self.align_corners), resize(aux, size, self.align_corners)]
