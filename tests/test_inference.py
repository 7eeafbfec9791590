import pytest
import torch

from conftest import STUDY_MODELS
from segrun import models
from segrun.inference import predict, sliding_logits, window_starts
from segrun.models import SegmentationModel


def test_window_starts_cover_the_image_with_two_thirds_stride():
    assert window_starts(10, 16) == [0]
    assert window_starts(100, 30) == [0, 20, 40, 60, 70]


def test_sliding_windows_reassemble_a_pixelwise_prediction():
    images = torch.randn(2, 3, 37, 53)
    pixelwise = lambda x: torch.cat([x * 2, x.sum(1, keepdim=True)], dim=1)
    assert torch.allclose(sliding_logits(pixelwise, images, (16, 20)), pixelwise(images), atol=1e-6)


def test_sliding_windows_average_the_logits_of_overlapping_windows_by_hand():
    """A model with border effects (zero-padded 3x3 convolution): each window's logits near its edges
    differ from the whole image's, so overlapping windows must be averaged, not overwritten."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    image = torch.randn(1, 1, 10, 14)
    # 6x8 windows over 10x14 at stride 2/3 of the window: rows start at 0 and 4, columns at 0, 5 and 6
    windows = [(top, left) for top in (0, 4) for left in (0, 5, 6)]
    total, count = torch.zeros(1, 2, 10, 14), torch.zeros(10, 14)
    with torch.no_grad():
        for top, left in windows:
            total[..., top:top + 6, left:left + 8] += conv(image[..., top:top + 6, left:left + 8])
            count[top:top + 6, left:left + 8] += 1
        assert count.min() == 1 and count.max() == 6  # every pixel covered; some by six windows
        expected = total / count
        torch.testing.assert_close(sliding_logits(conv, image, (6, 8)), expected, rtol=1e-6, atol=1e-6)
        assert not torch.allclose(expected, conv(image), atol=1e-3)  # the borders do matter here


def make_mirror_symmetric(model):
    """Every conv kernel equal to its left-right mirror: with an odd input size (all strides then
    sample symmetric positions) and align_corners=True, the model commutes with a horizontal flip."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.copy_((module.weight + module.weight.flip(-1)) / 2)
    return model.eval()


# the study's models: an SMP architecture pads on the bottom and right, which no flip mirrors
@pytest.mark.parametrize("name", STUDY_MODELS)
def test_flip_averaging_equals_the_plain_prediction_for_a_symmetric_model(name):
    torch.manual_seed(0)
    model = make_mirror_symmetric(models.create(name, 4, backbone="hrnet_w18_small"))
    half = torch.randn(1, 3, 65, 33)
    images = torch.cat([half, half.flip(-1)[..., 1:]], dim=-1)  # 65 x 65, its own mirror image
    assert torch.equal(images, images.flip(-1))
    # a scale-fusing model at its 1.0x scale alone: its 0.5x branch samples an odd size asymmetrically
    single = {"model_scales": (1.0,)} if models.fuses_scales(name) else {}
    with torch.no_grad():
        plain = predict(model, images, **single)
        flipped = predict(model, images, flip=True, **single)
    assert torch.allclose(plain, flipped, atol=1e-5)
    assert torch.allclose(plain.sum(1), torch.ones(1, 65, 65), atol=1e-5)


def test_multi_scale_averages_probabilities_of_each_scale():
    torch.manual_seed(0)
    model = models.create("hrnet", 3, backbone="hrnet_w18_small").eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        both = predict(model, images, (0.5, 1.0))
        one = predict(model, images, (1.0,))
        half = torch.nn.functional.interpolate(model(torch.nn.functional.interpolate(
            images, scale_factor=0.5, mode="bilinear", align_corners=True))[0], size=(64, 64), mode="bilinear",
            align_corners=True).softmax(1)
    assert torch.allclose(both, (one + half) / 2, atol=1e-6)


def test_a_scale_fusing_model_predicts_through_its_own_fusion():
    torch.manual_seed(0)
    model = models.create("hrnet_ocr_ms", 3, backbone="hrnet_w18_small").eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fused = model.predict_scales(images, (0.5, 1.0, 2.0))
        assert torch.allclose(predict(model, images, model_scales=(0.5, 1.0, 2.0)), fused.softmax(1))
        # without model_scales, its forward: the 0.5x + 1.0x fusion it was trained with
        assert torch.allclose(predict(model, images), model.predict_scales(images, (0.5, 1.0)).softmax(1), atol=1e-5)


def test_outer_scales_wrap_the_models_own_fusion_and_sum_logits():
    torch.manual_seed(0)
    model = models.create("hrnet_ocr_ms", 3, backbone="hrnet_w18_small").eval()
    images = torch.randn(1, 3, 64, 64)
    inner = (0.5, 1.0)
    with torch.no_grad():
        summed = predict(model, images, scales=(0.75, 1.0), combine="sum_logits", model_scales=inner)
        small = torch.nn.functional.interpolate(images, size=(48, 48), mode="bilinear", align_corners=True)
        expected = model.predict_scales(images, inner) + torch.nn.functional.interpolate(
            model.predict_scales(small, inner), size=(64, 64), mode="bilinear", align_corners=True)
    assert torch.allclose(summed, expected, atol=1e-5)


class PixelwiseModel(SegmentationModel):
    """Logits = the image's channels: commutes with any flip, so flip averaging must change nothing
    (it would, were the flipped prediction not flipped back)."""

    align_corners = True

    @classmethod
    def output_names(cls, **options):
        return ("out",)

    def forward(self, images):
        return [images * 3]


def test_flipped_prediction_is_flipped_back():
    images = torch.randn(2, 3, 5, 7)
    assert torch.allclose(predict(PixelwiseModel(), images, flip=True), predict(PixelwiseModel(), images), atol=1e-6)


def test_sum_logits_with_flip_sums_the_mean_of_each_flip_pair():
    model = PixelwiseModel()
    images = torch.randn(1, 3, 8, 8)
    assert torch.allclose(predict(model, images, scales=(1.0, 1.0), flip=True, combine="sum_logits"), images * 6)


def test_model_scales_need_a_scale_fusing_model():
    with pytest.raises(ValueError, match="does not fuse scales"):
        predict(PixelwiseModel(), torch.randn(1, 3, 8, 8), model_scales=(1.0,))
