"""HRNetV2 for segmentation (Wang et al. 2020): all four HRNet branches upsampled to the
highest resolution, concatenated, and classified by a 1x1 conv-BN-ReLU-conv head.

The backbone is timm's HRNet with `features_only=True, feature_location=""`, which returns the
raw branch outputs (18/36/72/144 channels at W18, 48/96/192/384 at W48) at strides 4 to 32, with
its branch fusion switched to the segmentation HRNet's exact-size bilinear resizing.
"""
import timm
import torch
from timm.models.hrnet import HighResolutionModule
from torch import nn

from segrun.layers import conv_bn_relu, resize
from segrun.models.base import SegmentationModel

# Widths of timm's HRNet family (the study uses W48); all give raw branches at strides 4-32.
BACKBONES = (
    "hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18", "hrnet_w30", "hrnet_w32",
    "hrnet_w40", "hrnet_w44", "hrnet_w48", "hrnet_w64",
)


class ExactSizeFusion(HighResolutionModule):
    """timm's HRNet module with the fusion of the segmentation HRNet: a lower-resolution branch
    is resized bilinearly to the exact size of the branch it joins. timm's classification HRNet
    upsamples by nearest x2^k instead, which fails unless the input size divides by 32."""

    align_corners: bool

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.num_branches == 1:
            return [self.branches[0](x[0])]
        x = [branch(tensor) for branch, tensor in zip(self.branches, x)]
        fused = []
        for i, fuse_into_i in enumerate(self.fuse_layers):
            total = None
            for j, fuse in enumerate(fuse_into_i):
                if j > i:  # 1x1 conv + BN, then resize in place of timm's trailing nn.Upsample
                    term = resize(fuse[:-1](x[j]), x[i].shape[-2:], self.align_corners)
                else:
                    term = fuse(x[j])
                total = term if total is None else total + term
            fused.append(self.fuse_act(total))
        return fused


def create_backbone(name: str, align_corners: bool = True) -> nn.Module:
    """timm HRNet returning its four branches; `feature_info.channels()` says their widths."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    # out_indices 1-4 skip the stride-2 stem feature, which HRNetV2 does not use.
    backbone = timm.create_model(name, pretrained=False, features_only=True, feature_location="", out_indices=(1, 2, 3, 4))
    for module in backbone.modules():
        if type(module) is HighResolutionModule:
            # Same parameters, so pretrained weights load unchanged; only the forward differs.
            module.__class__ = ExactSizeFusion
            module.align_corners = align_corners
    return backbone


def reset_to_pytorch_defaults(module: nn.Module) -> None:
    """Every convolution, batch norm and linear layer of `module` back to PyTorch's default init
    (convolutions: Kaiming uniform with a=sqrt(5); batch norm: weight 1, bias 0), replacing timm's
    HRNet init (He normal, fan_out): how the study's from-scratch runs started (HRNet-Seg's
    INIT_WEIGHTS false leaves every layer as PyTorch built it)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            layer.reset_parameters()


def concat_branches(branches: list[torch.Tensor], align_corners: bool) -> torch.Tensor:
    """Upsample every branch to the first (highest-resolution) one and concatenate on channels."""
    size = branches[0].shape[-2:]
    return torch.cat([resize(branch, size, align_corners) for branch in branches], dim=1)


class HRNetV2(SegmentationModel):
    """HRNetV2-W48 with 19 classes has 65,859,379 parameters, as the reference implementation."""

    def __init__(self, num_classes: int, backbone: str = "hrnet_w48", align_corners: bool = True):
        super().__init__()
        self.align_corners = align_corners
        self.backbone = create_backbone(backbone, align_corners)
        channels = sum(self.backbone.feature_info.channels())
        self.head = nn.Sequential(
            *conv_bn_relu(channels, channels, 1, bias=True),  # unpacked: the reference's keys head.0 to head.3
            nn.Conv2d(channels, num_classes, kernel_size=1),
        )

    @classmethod
    def output_names(cls, **options) -> tuple[str, ...]:
        return ("out",)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = concat_branches(self.backbone(images), self.align_corners)
        return [resize(self.head(features), images.shape[-2:], self.align_corners)]
