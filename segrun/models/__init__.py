"""Model registry: one plain dict from name to model class.

Every model implements segrun.models.base.SegmentationModel: built as (num_classes, **params), it
returns a list of logits tensors at the input's resolution (one per output, in `output_names` order).
"""
import inspect

from segrun.errors import did_you_mean
from segrun.models import smp_architectures as smp
from segrun.models.base import ScaleFusingModel, SegmentationModel
from segrun.models.hrnet import BACKBONES, HRNetV2, reset_to_pytorch_defaults
from segrun.models.mscale import HRNetMscaleOCR
from segrun.models.ocr import HRNetOCR
from segrun.models.ocr_aspp import HRNetOCRASPP
from segrun.spec.loader import MODEL_FIELDS

# the study's models, then segmentation_models_pytorch's architectures by SMP's names
MODELS: dict[str, type[SegmentationModel]] = {"hrnet": HRNetV2, "hrnet_ocr": HRNetOCR, "hrnet_ocr_aspp": HRNetOCRASPP,
                                              "hrnet_ocr_ms": HRNetMscaleOCR, **smp.MODELS}


def create(name: str, num_classes: int, backbone: str = "hrnet_w48", **params):
    """Build a registered model. Options given as None are dropped so the class defaults apply."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes, backbone=backbone, **{key: value for key, value in params.items() if value is not None})


# what every model class takes beside its own options, from [model]'s fixed keys and the dataset
_SHARED_PARAMS = ("self", "num_classes", "backbone", "align_corners")


def _option_parameters(name: str) -> dict[str, inspect.Parameter]:
    model_class = MODELS[name]
    if issubclass(model_class, smp.SMPModel):
        return {p.name: p for p in model_class.option_parameters()}
    parameters = inspect.signature(model_class.__init__).parameters.values()
    return {p.name: p for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _SHARED_PARAMS}


def option_names(name: str) -> tuple[str, ...]:
    """The options of a registered model: its constructor's keyword arguments beyond the shared ones
    (for an SMP architecture, those of SMP's class that segrun does not set)."""
    return tuple(_option_parameters(name))


# SMP architectures built for transformer encoders take these; the others SMP's resnet18
_SMALL_SMP_ENCODERS = {"segformer": "mit_b0", "dpt": "tu-vit_tiny_patch16_224"}


def smallest_backbone(name: str) -> str:
    """The smallest backbone of a registered model, for runs at tiny size (--smoke, the tests)."""
    if issubclass(MODELS[name], smp.SMPModel):
        return _SMALL_SMP_ENCODERS.get(name, "resnet18")
    return "hrnet_w18_small"


def backbone_problem(name: str, backbone: str) -> str | None:
    """Why `backbone` is no backbone of model `name` (with the closest names), or None."""
    if issubclass(MODELS[name], smp.SMPModel):
        if smp.is_encoder(backbone):
            return None
        if backbone.startswith(smp.TIMM_PREFIX):
            timm_name = backbone.removeprefix(smp.TIMM_PREFIX)
            import timm

            return (f"no timm model {timm_name!r}{did_you_mean(timm_name, timm.list_models())} (tu- takes any "
                    "name of timm.list_models())")
        return (f"unknown encoder {backbone!r} for {name}{did_you_mean(backbone, smp.encoder_names())} (SMP's "
                "encoders, e.g. resnet101, mit_b2, or any timm model as tu-NAME, e.g. tu-convnext_tiny)")
    if backbone in BACKBONES:
        return None
    return f"unknown backbone {backbone!r}{did_you_mean(backbone, BACKBONES)} (known: {', '.join(sorted(BACKBONES))})"


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _is_kind(value, kind) -> bool:
    """Whether a TOML value is of an option's annotated kind (any value for other annotations)."""
    if kind not in _KINDS:
        return True
    if kind is bool or isinstance(value, bool):  # TOML's true is no number
        return kind is bool and isinstance(value, bool)
    return isinstance(value, (int, float) if kind is float else kind)


def option_problem(name: str, key: str, value) -> str | None:
    """Why `key = value` is no option of model `name` (an unknown key with the closest names, or a
    value of another kind than its annotation), or None if it is one."""
    parameters = _option_parameters(name)
    if key in parameters:
        kind = parameters[key].annotation
        return None if _is_kind(value, kind) else f"expected {_KINDS[kind]}, got {value!r}"
    takes = f"it takes: {', '.join(parameters)}" if parameters else "it takes no options"
    return f"model {name} takes no option {key}{did_you_mean(key, (*parameters, *MODEL_FIELDS))} ({takes})"


def model_params(model_spec) -> dict:
    """The keyword arguments a ModelSpec gives its model class: backbone, align_corners and the
    model's own options."""
    return {"backbone": model_spec.backbone, "align_corners": model_spec.align_corners, **model_spec.options}


def output_names(model_spec) -> tuple[str, ...]:
    """Names of the outputs the model of this spec returns, without building it."""
    return MODELS[model_spec.name].output_names(**model_params(model_spec))


def fuses_scales(name: str) -> bool:
    """Whether the model fuses test-time scales itself (ScaleFusingModel.predict_scales), which
    needs 1.0 among the scales, instead of inference averaging each scale's probabilities."""
    return issubclass(MODELS[name], ScaleFusingModel)


__all__ = ["BACKBONES", "MODELS", "ScaleFusingModel", "SegmentationModel", "create", "fuses_scales", "model_params",
           "backbone_problem", "option_names", "option_problem", "output_names", "reset_to_pytorch_defaults"]
