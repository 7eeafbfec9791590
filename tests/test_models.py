import inspect

import pytest
import torch

from segrun import models
from segrun.layers import rescale
from segrun.models import ScaleFusingModel, SegmentationModel
from segrun.spec import ModelSpec


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


# The reference implementations' counts at W48 with 19 classes. OCR+ASPP is the study's: NVIDIA's
# OCRNetASPP (ASPP 720 -> 5 x 256, then the OCR block on 1280 channels) with a second ASPP
# (512 -> 5 x 256) in the OCR fusion.
REFERENCE_PARAMETERS = {"hrnet": 65_859_379, "hrnet_ocr": 70_372_678, "hrnet_ocr_ms": 72_143_430,
                        "hrnet_ocr_aspp": 83_892_326}


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMETERS))
def test_w48_parameter_counts_match_the_references(name):
    with torch.device("meta"):
        model = models.create(name, 19, backbone="hrnet_w48")
    assert parameter_count(model) == REFERENCE_PARAMETERS[name]


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_implements_the_model_interface(name):
    model_class = models.MODELS[name]
    assert issubclass(model_class, SegmentationModel) and not inspect.isabstract(model_class)
    assert isinstance(model_class.output_names(), tuple)  # from the class, without building the model
    assert models.fuses_scales(name) == issubclass(model_class, ScaleFusingModel)


def test_only_ms_ocr_fuses_scales_itself():
    assert [name for name in sorted(models.MODELS) if models.fuses_scales(name)] == ["hrnet_ocr_ms"]


def output_count(name: str, **options) -> int:
    return len(models.output_names(ModelSpec(name=name, backbone=models.smallest_backbone(name), options=options)))


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.parametrize("height, width", [(64, 128), (250, 510)])
def test_every_model_returns_its_outputs_at_input_size(name, height, width):
    torch.manual_seed(0)
    model = models.create(name, 5, backbone=models.smallest_backbone(name)).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, height, width))
    assert len(outputs) == output_count(name)
    for output in outputs:
        assert output.shape == (2, 5, height, width)
        assert torch.isfinite(output).all()


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_trains_a_step(name):
    torch.manual_seed(0)
    model = models.create(name, 3, backbone=models.smallest_backbone(name))
    outputs = model(torch.randn(2, 3, 64, 64))
    sum(output.mean() for output in outputs).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)  # DDP needs no unused one


def test_create_rejects_unknown_names_and_drops_none_options():
    with pytest.raises(ValueError, match="unknown model 'nope'; known: deeplabv3, deeplabv3plus, dpt, fpn, hrnet"):
        models.create("nope", 19)
    model = models.create("hrnet", 4, backbone="hrnet_w18_small", align_corners=None)
    assert model.align_corners is True


def test_ms_ocr_outputs_and_single_scale_mode():
    torch.manual_seed(0)
    model = models.create("hrnet_ocr_ms", 4, backbone="hrnet_w18_small").eval()
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        joint, joint_aux, pred_lo, pred_hi = model(images)
        logits_lo, aux_lo, attention_lo = model.single_scale(rescale(images, 0.5, align_corners=True))
        logits_hi, aux_hi, _ = model.single_scale(images)
    up = lambda t: torch.nn.functional.interpolate(t, size=(64, 96), mode="bilinear", align_corners=True)
    assert torch.allclose(joint, up(attention_lo * logits_lo) + (1 - up(attention_lo)) * logits_hi, atol=1e-5)
    assert torch.allclose(joint_aux, up(attention_lo * aux_lo) + (1 - up(attention_lo)) * aux_hi, atol=1e-5)
    assert torch.allclose(pred_lo, up(logits_lo)) and torch.allclose(pred_hi, logits_hi)
    assert attention_lo.shape == (1, 1, 32, 48) and ((attention_lo >= 0) & (attention_lo <= 1)).all()

    single = models.create("hrnet_ocr_ms", 4, backbone="hrnet_w18_small", mscale_training=False)
    assert len(single(images)) == 2 == output_count("hrnet_ocr_ms", mscale_training=False)


def test_ms_ocr_inference_fuses_scales_from_the_highest_down():
    torch.manual_seed(0)
    model = models.create("hrnet_ocr_ms", 3, backbone="hrnet_w18_small").eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fused = model.predict_scales(images, [0.5, 1.0, 2.0])
        p2, _, _ = model.single_scale(rescale(images, 2.0, align_corners=True))
        p1, _, a1 = model.single_scale(images)
        p05, _, a05 = model.single_scale(rescale(images, 0.5, align_corners=True))
    resize = lambda t, size: torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=True)
    joint = a1 * p1 + (1 - a1) * resize(p2, (64, 64))
    joint = resize(a05 * p05, (64, 64)) + (1 - resize(a05, (64, 64))) * joint
    assert torch.allclose(fused, joint, atol=1e-5)
    with pytest.raises(ValueError, match="needs 1.0 among the scales"):
        model.predict_scales(images, [0.5, 2.0])
