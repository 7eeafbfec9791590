"""Loss registry: one plain dict from name to loss class, plus named class-weight sets.

Every loss is an nn.Module called as loss(logits [N, C, H, W], target [N, H, W]) -> scalar,
with `ignore_index` pixels left out.
"""
from segrun.losses.base import OptionError
from segrun.losses.cross_entropy import CrossEntropy, WeightedCrossEntropy
from segrun.losses.dice import Dice, DiceCE, DiceTopK, TopK
from segrun.losses.rmi import RMI, WeightedRMI

LOSSES = {
    "ce": CrossEntropy, "wce": WeightedCrossEntropy, "rmi": RMI, "wrmi": WeightedRMI,
    "dc": Dice, "dc_ce": DiceCE, "topk": TopK, "dc_topk": DiceTopK,
}

# Per-class weights of the HRNet/OCR Cityscapes configurations, in trainId order.
CLASS_WEIGHT_SETS = {
    "cityscapes": (0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
                   0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507),
}


def create(name: str, num_classes: int, ignore_index: int = 255, class_weights=None, **params):
    """Build a registered loss. `class_weights` is a sequence of num_classes numbers or the name
    of a set in CLASS_WEIGHT_SETS; only the weighted losses take it, and they require it. Other
    options are the loss's `options` (spec keys such as rmi_radius); None leaves the default."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    loss_class = LOSSES[name]
    params = {key: value for key, value in params.items() if value is not None}
    for key in params:
        if key not in loss_class.options:
            raise OptionError(key, f"loss {name} takes no {key} (it takes: {', '.join(loss_class.options) or 'no options'})")
    if isinstance(class_weights, str):
        if class_weights not in CLASS_WEIGHT_SETS:
            raise ValueError(f"unknown class weight set {class_weights!r}; known: {', '.join(CLASS_WEIGHT_SETS)}")
        class_weights = CLASS_WEIGHT_SETS[class_weights]
    if loss_class.takes_class_weights:
        if class_weights is None or len(class_weights) != num_classes:
            raise ValueError(f"loss {name} needs {num_classes} class weights, got {class_weights!r}")
        params["class_weights"] = class_weights
    elif class_weights is not None:
        raise ValueError(f"loss {name} takes no class weights")
    return loss_class(ignore_index=ignore_index, **params)


OPTION_KEYS = tuple(sorted(set().union(*(loss_class.options for loss_class in LOSSES.values()))))


def loss_options(loss_spec) -> dict:
    """The loss options a LossSpec sets (unset ones left out), as keyword arguments for `create`."""
    return {key: getattr(loss_spec, key) for key in OPTION_KEYS if getattr(loss_spec, key) is not None}


__all__ = ["CLASS_WEIGHT_SETS", "LOSSES", "OptionError", "create", "loss_options"]
