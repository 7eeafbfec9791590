"""Loss registry: one plain dict from name to loss class, plus named class-weight sets.

Every loss is an nn.Module called as loss(logits [N, C, H, W], target [N, H, W]) -> scalar,
with `ignore_index` pixels left out. Its options are the keyword arguments of its class (the keys
of a spec's [[loss]] table other than name, weight and class_weights).
"""
import inspect

from segrun.errors import did_you_mean
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

# Option keys of earlier versions, which carried the loss's name as a prefix.
RENAMED_OPTIONS = {
    "rmi_radius": "radius", "rmi_pool": "pool", "rmi_pool_size": "pool_size", "rmi_pool_stride": "pool_stride",
    "rmi_lambda": "weight_lambda", "rmi_lambda_mode": "lambda_mode", "topk_percent": "percent",
    "dice_smooth": "smooth", "dice_background": "background",
}


def option_names(loss_class) -> tuple[str, ...]:
    """The options a loss class takes: its constructor's keyword arguments, following **kwargs
    into the parent class (WeightedRMI passes its options on to RMI)."""
    names = []
    for cls in loss_class.__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name not in ("self", "ignore_index", "class_weights")]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return tuple(dict.fromkeys(names))


def class_weight_values(name: str, num_classes: int, class_weights) -> tuple[float, ...] | None:
    """The class weights loss `name` gets from a spec's `class_weights` (a list or a set's name):
    the weighted losses require num_classes non-negative numbers, the others take none."""
    takes = LOSSES[name].takes_class_weights
    if class_weights is None:
        if takes:
            raise OptionError("class_weights", f'loss {name} needs class_weights: a list of {num_classes} numbers '
                              f'or the name of a set ({", ".join(CLASS_WEIGHT_SETS)})')
        return None
    if not takes:
        raise OptionError("class_weights", f"loss {name} takes no class_weights (the weighted variant is w{name})")
    if isinstance(class_weights, str):
        if class_weights not in CLASS_WEIGHT_SETS:
            raise OptionError("class_weights", f"unknown class weight set {class_weights!r}"
                              f"{did_you_mean(class_weights, CLASS_WEIGHT_SETS)} (known: {', '.join(CLASS_WEIGHT_SETS)})")
        class_weights = CLASS_WEIGHT_SETS[class_weights]
    if len(class_weights) != num_classes:
        raise OptionError("class_weights", f"expected {num_classes} class weights (one per class), got {len(class_weights)}")
    if any(not weight >= 0 for weight in class_weights):
        raise OptionError("class_weights", f"expected non-negative class weights, got {list(class_weights)}")
    return tuple(class_weights)


def check_option_names(name: str, options) -> None:
    accepted = option_names(LOSSES[name])
    for key in options:
        if key in accepted:
            continue
        if key in RENAMED_OPTIONS and RENAMED_OPTIONS[key] in accepted:
            raise OptionError(key, f"renamed to {RENAMED_OPTIONS[key]}")
        takes = ", ".join(accepted) or "no options"
        raise OptionError(key, f"loss {name} takes no option {key}{did_you_mean(key, accepted)} (it takes: {takes})")


def create(name: str, num_classes: int, ignore_index: int = 255, class_weights=None, **options):
    """Build a registered loss. `class_weights` is a sequence of num_classes numbers or the name
    of a set in CLASS_WEIGHT_SETS (see class_weight_values); `options` are keyword arguments of
    the loss class, checked against its signature. Raises OptionError naming the bad key."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}{did_you_mean(name, LOSSES)}; known: {', '.join(sorted(LOSSES))}")
    check_option_names(name, options)
    weights = class_weight_values(name, num_classes, class_weights)
    if weights is not None:
        options["class_weights"] = weights
    return LOSSES[name](ignore_index=ignore_index, **options)


__all__ = ["CLASS_WEIGHT_SETS", "LOSSES", "OptionError", "create", "option_names"]
