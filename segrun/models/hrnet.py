"""HRNetV2 for segmentation (Wang et al. 2020): all four HRNet branches upsampled to the
highest resolution, concatenated, and classified by a 1x1 conv-BN-ReLU-conv head.

The backbone is timm's HRNet with `features_only=True, feature_location=""`, which returns the
raw branch outputs (18/36/72/144 channels at W18, 48/96/192/384 at W48) at strides 4 to 32.
"""
import timm
import torch
import torch.nn.functional as F
from torch import nn

# Widths of timm's HRNet family (the study uses W48); all give raw branches at strides 4-32.
BACKBONES = (
    "hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18", "hrnet_w30", "hrnet_w32",
    "hrnet_w40", "hrnet_w44", "hrnet_w48", "hrnet_w64",
)


def create_backbone(name: str) -> nn.Module:
    """timm HRNet returning its four branches; `feature_info.channels()` says their widths."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    # out_indices 1-4 skip the stride-2 stem feature, which HRNetV2 does not use.
    return timm.create_model(name, pretrained=False, features_only=True, feature_location="", out_indices=(1, 2, 3, 4))


def resize(tensor: torch.Tensor, size, align_corners: bool) -> torch.Tensor:
    """Bilinear resize of [N, C, H, W] to `size` (a no-op at that size already)."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=align_corners)


def concat_branches(branches: list[torch.Tensor], align_corners: bool) -> torch.Tensor:
    """Upsample every branch to the first (highest-resolution) one and concatenate on channels."""
    size = branches[0].shape[-2:]
    return torch.cat([resize(branch, size, align_corners) for branch in branches], dim=1)


class HRNetV2(nn.Module):
    """HRNetV2-W48 with 19 classes has 65,859,379 parameters, as the reference implementation."""

    def __init__(self, num_classes: int, backbone: str = "hrnet_w48", align_corners: bool = True):
        super().__init__()
        self.align_corners = align_corners
        self.backbone = create_backbone(backbone)
        channels = sum(self.backbone.feature_info.channels())
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_classes, kernel_size=1),
        )

    @staticmethod
    def output_names(**params) -> tuple[str, ...]:
        return ("out",)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = concat_branches(self.backbone(images), self.align_corners)
        return [resize(self.head(features), images.shape[-2:], self.align_corners)]
