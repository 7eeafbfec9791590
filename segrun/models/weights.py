"""Loading published and segrun checkpoints into a model, whatever their key layout.

Layouts read:
- official HRNet (ImageNet `hrnetv2_w48_imagenet_pretrained.pth`, PaddleClas' SSLD
  `HRNet_W48_C_ssld_pretrained.pth`) and timm: backbone keys at the top level (conv1.weight,
  stage2.0.branches...), plus a classification head (incre_modules, downsamp_modules,
  final_layer, classifier) that segmentation does not use;
- NVIDIA's semantic-segmentation (e.g. the Mapillary MS OCR): `module.` and `backbone.`
  prefixes, heads under `ocr.` / `scale_attn.`, the auxiliary head sometimes named `last_layer`;
- segrun / Lightning checkpoints: {"state_dict": {"model.<key>": ...}}.
"""
from pathlib import Path

import torch
from torch import nn

from segrun.errors import UserError


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({error.__class__.__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: holds no state dict of tensors")
    return state


def _candidate_names(key: str) -> list[str]:
    """Names a checkpoint key may have in a segrun model, most specific first."""
    for prefix in ("module.", "model."):
        key = key.removeprefix(prefix)
    if "last_layer." in key:  # NVIDIA's name for the OCR auxiliary head, wherever it sits
        return ["ocr.aux_head." + key.split("last_layer.", 1)[1]]
    return [key, f"backbone.{key}", f"ocr.{key}"]


def _short_list(keys, limit: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "") if keys else "none"


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: Path, strict_backbone: bool) -> str:
    """Copy every tensor of `state` whose mapped name exists in the model with the same shape.
    With strict_backbone, a backbone tensor of another shape is an error (the wrong backbone).
    Returns a one-line summary of what was loaded, skipped and left missing."""
    own = model.state_dict()
    loaded, unexpected, mismatched = {}, [], []
    for key, value in state.items():
        name = next((candidate for candidate in _candidate_names(key) if candidate in own), None)
        if name is None:
            unexpected.append(key)
        elif own[name].shape != value.shape:
            if strict_backbone and name.startswith("backbone."):
                raise UserError(f"{source}: {key} has shape {list(value.shape)} but the model's {name} is "
                                f"{list(own[name].shape)}; the checkpoint is for another backbone than model.backbone")
            mismatched.append(name)
        else:
            loaded[name] = value
    model.load_state_dict(loaded, strict=False)
    missing = set(own) - set(loaded)
    return (f"{len(loaded)} tensors from {source}; missing: {_short_list(missing)}; "
            f"unexpected: {_short_list(unexpected)}; shape differs: {_short_list(mismatched)}")


def load_pretrained(model: nn.Module, path: Path) -> str:
    """Published weights (see the module docstring); a backbone shape mismatch is an error."""
    return "pretrained: " + load_matching(model, read_state_dict(path), path, strict_backbone=True)


def load_init(model: nn.Module, path: Path) -> str:
    """A segrun checkpoint (the one `init` names, see run_folder.init_checkpoint): every tensor
    whose name and shape match is loaded, e.g. all but the classifier of a model with other classes."""
    return "init: " + load_matching(model, read_state_dict(path), path, strict_backbone=False)
