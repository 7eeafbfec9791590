"""Model registry: one plain dict from name to model class.

Every model implements segrun.models.base.SegmentationModel: built as (num_classes, **params), it
returns a list of logits tensors at the input's resolution (one per output, in `output_names` order).
"""
import inspect

from segrun.models.base import ScaleFusingModel, SegmentationModel
from segrun.models.hrnet import BACKBONES, HRNetV2, reset_to_pytorch_defaults
from segrun.models.mscale import HRNetMscaleOCR
from segrun.models.ocr import HRNetOCR
from segrun.models.ocr_aspp import HRNetOCRASPP

MODELS: dict[str, type[SegmentationModel]] = {"hrnet": HRNetV2, "hrnet_ocr": HRNetOCR, "hrnet_ocr_aspp": HRNetOCRASPP, "hrnet_ocr_ms": HRNetMscaleOCR}


def create(name: str, num_classes: int, backbone: str = "hrnet_w48", **params):
    """Build a registered model. Options given as None are dropped so the class defaults apply."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes, backbone=backbone, **{key: value for key, value in params.items() if value is not None})


def takes_param(name: str, param: str) -> bool:
    return param in inspect.signature(MODELS[name]).parameters


def model_params(model_spec) -> dict:
    """The keyword arguments a ModelSpec gives its model class (unset options left out)."""
    params = {"backbone": model_spec.backbone, "align_corners": model_spec.align_corners,
              "mscale_training": model_spec.mscale_training}
    return {key: value for key, value in params.items() if value is not None}


def output_names(model_spec) -> tuple[str, ...]:
    """Names of the outputs the model of this spec returns, without building it."""
    return MODELS[model_spec.name].output_names(**model_params(model_spec))


def fuses_scales(name: str) -> bool:
    """Whether the model fuses test-time scales itself (ScaleFusingModel.predict_scales), which
    needs 1.0 among the scales, instead of inference averaging each scale's probabilities."""
    return issubclass(MODELS[name], ScaleFusingModel)


__all__ = ["BACKBONES", "MODELS", "ScaleFusingModel", "SegmentationModel", "create", "fuses_scales", "model_params",
           "output_names", "reset_to_pytorch_defaults", "takes_param"]
