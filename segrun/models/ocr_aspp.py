"""HRNet + ASPP + OCR as the HRNet/OCR comparison study built it: NVIDIA's OCRNetASPP (an atrous
spatial pyramid of 1x1, three dilated 3x3 at the output-stride-8 rates 12/24/36 and image pooling,
256 channels each, in front of the OCR head) with a second such pyramid inside the OCR head, over
its 512-channel pixel features, whose output joins the object context and the features before the
fusing 1x1 conv. HRNet-W48 with 19 classes: 83,892,326 parameters (NVIDIA's OCRNetASPP alone,
without the second pyramid, has 79,433,318)."""
import torch
from torch import nn

from segrun.layers import conv_bn_relu, resize
from segrun.models.base import SegmentationModel
from segrun.models.hrnet import concat_branches, create_backbone
from segrun.models.ocr import OCRHead

ASPP_RATES_OUTPUT_STRIDE_8 = (12, 24, 36)  # (6, 12, 18) doubled for output stride 8


class ASPP(nn.Module):
    """Output: [image pooling, 1x1, 3x3 at each rate] concatenated, 5 x bottleneck channels."""

    def __init__(self, in_channels: int, bottleneck_channels: int = 256, rates=ASPP_RATES_OUTPUT_STRIDE_8,
                 align_corners: bool = True):
        super().__init__()
        self.align_corners = align_corners
        self.features = nn.ModuleList([
            conv_bn_relu(in_channels, bottleneck_channels, 1),
            *(conv_bn_relu(in_channels, bottleneck_channels, 3, dilation=rate) for rate in rates),
        ])
        self.img_pooling = nn.AdaptiveAvgPool2d(1)
        self.img_conv = conv_bn_relu(in_channels, bottleneck_channels, 1)
        self.out_channels = bottleneck_channels * (len(rates) + 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = resize(self.img_conv(self.img_pooling(features)), features.shape[-2:], self.align_corners)
        return torch.cat([pooled, *(branch(features) for branch in self.features)], dim=1)


class HRNetOCRASPP(SegmentationModel):
    """HRNetV2 branches -> ASPP -> OCR head with an ASPP in its fusion. Outputs [main, aux] at the
    input's size."""

    def __init__(self, num_classes: int, backbone: str = "hrnet_w48", align_corners: bool = True):
        super().__init__()
        self.align_corners = align_corners
        self.backbone = create_backbone(backbone, align_corners)
        self.aspp = ASPP(sum(self.backbone.feature_info.channels()), align_corners=align_corners)
        mid_channels = 512
        self.ocr = OCRHead(self.aspp.out_channels, num_classes, mid_channels,
                           context_aspp=ASPP(mid_channels, align_corners=align_corners))

    @classmethod
    def output_names(cls, **options) -> tuple[str, ...]:
        return ("main", "aux")

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        logits, aux, _ = self.ocr(self.aspp(concat_branches(self.backbone(images), self.align_corners)))
        size = images.shape[-2:]
        return [resize(logits, size, self.align_corners), resize(aux, size, self.align_corners)]
