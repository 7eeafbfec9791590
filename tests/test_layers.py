import pytest
import torch

from segrun.layers import conv_bn_relu, rescale, resize


@pytest.mark.parametrize("kernel_size, dilation", [(1, 1), (3, 1), (3, 12), (3, 36)])
def test_conv_bn_relu_keeps_the_input_size_at_any_dilation(kernel_size, dilation):
    block = conv_bn_relu(4, 6, kernel_size, dilation=dilation)
    conv = block[0]
    assert conv.padding == (dilation * (kernel_size // 2),) * 2 and conv.dilation == (dilation, dilation)
    assert conv.bias is None and [key for key in block.state_dict() if key.endswith("weight")] == ["0.weight", "1.weight"]
    output = block(torch.randn(2, 4, 9, 13))
    assert output.shape == (2, 6, 9, 13) and (output >= 0).all()


def test_a_dilated_conv_bn_relu_samples_taps_dilation_pixels_apart():
    block = conv_bn_relu(1, 1, 3, dilation=2).eval()
    with torch.no_grad():
        block[0].weight.zero_()
        block[0].weight[0, 0, 1, 2] = 1.0  # the tap right of the centre
    image = torch.arange(35.0).reshape(1, 1, 5, 7)
    output = block(image)
    expected = torch.zeros_like(image)
    expected[..., :5] = image[..., 2:]  # shifted by the dilation, zero padding beyond the edge
    bn = block[1]
    assert torch.allclose(output, (expected / (1 + bn.eps) ** 0.5).relu())


def test_resize_and_rescale_are_no_ops_at_the_same_size():
    images = torch.randn(1, 3, 10, 14)
    assert resize(images, (10, 14), align_corners=True) is images
    assert rescale(images, 1.0, align_corners=True) is images
    assert resize(images, (5, 7), align_corners=False).shape == (1, 3, 5, 7)
    assert rescale(images, 0.5, align_corners=True).shape == (1, 3, 5, 7)
    assert rescale(images, 0.75, align_corners=True).shape == (1, 3, 7, 10)  # floor(scale * size)
