"""Loading published and segrun checkpoints into a model, whatever their key layout.

Layouts read (a file's layout is recognised from its keys, one key at a time):
- official HRNet (ImageNet `hrnetv2_w48_imagenet_pretrained.pth`, PaddleClas' SSLD
  `HRNet_W48_C_ssld_pretrained.pth`) and timm: backbone keys at the top level (conv1.weight,
  stage2.0.branches...), plus a classification head (incre_modules, downsamp_modules,
  final_layer, classifier) that segmentation does not use;
- HRNet-Semantic-Segmentation's trained models (seg_hrnet: HRNetV2, seg_hrnet_ocr: HRNet-OCR), as
  released (keys under `model.`, beside the loss's `loss.*`) or without the prefix: the backbone at
  the top level, HRNetV2's head as `last_layer`, the OCR head's modules at the top level with
  conv3x3_ocr and aux_head's BatchNorm directly at index 1 (segrun nests it with its ReLU);
- the HRNet/OCR study's Lightning checkpoints (MIC-DKFZ/semantic_segmentation): {"state_dict":
  {"model.<key>": ...}}, with hrnet and hrnet_ocr in the layout above and hrnet_ocr_aspp and
  hrnet_ocr_ms in segrun's own (`backbone.`, `aspp.`, `ocr.`, `scale_attn.`);
- NVIDIA's semantic-segmentation (e.g. the Mapillary MS OCR): `module.` and `backbone.`
  prefixes, heads under `ocr.` / `scale_attn.` (its files hold no `last_layer`; the study's loader
  renames one to `aux_head` for files that do);
- segrun's own checkpoints: {"state_dict": {"model.<key>": ..., "losses.<i>.<buffer>": ...}}.
"""
import re
import warnings
from pathlib import Path

import attrs
import torch
from torch import nn

from segrun.errors import UserError, why_not_there

# HRNet-Semantic-Segmentation's OCRNet (which the study copied) puts BatchNorm directly at index 1
# of conv3x3_ocr and aux_head, and aux_head's classifier after a ReLU at index 3; segrun (as
# NVIDIA's OCR_block) nests BatchNorm and ReLU in one Sequential at index 1, classifier at 2.
_FLAT_OCR_MODULES = {"conv3x3_ocr.1": "ocr.conv3x3_ocr.1.0", "aux_head.1": "ocr.aux_head.1.0", "aux_head.3": "ocr.aux_head.2"}


def _numpy_scalars() -> list:
    """What a pickled numpy scalar needs (a training snapshot's `mean_iu` or `best_mIoU`): numpy's
    scalar constructor and its dtypes. Nothing else of numpy, and no code, is let through."""
    import importlib

    import numpy as np

    try:
        multiarray = importlib.import_module("numpy._core.multiarray")  # numpy 2
    except ImportError:
        multiarray = importlib.import_module("numpy.core.multiarray")
    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [multiarray.scalar, np.dtype, *dtypes]


def _refusal(path: Path, error: Exception) -> UserError:
    """What torch's weights_only loader refused, in segrun's words: the file never ran code."""
    text = str(error)
    blocked = re.search(r"GLOBAL ([\w.]+) whose module ([\w.]+) is blocked", text)
    if blocked:
        return UserError(f"{path}: holds pickled code (a call to {blocked.group(1)}), which segrun never runs: not "
                         "loaded; if you did not make this file, do not load it anywhere")
    unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if unsupported:
        return UserError(f"{path}: holds pickled Python objects besides tensors ({unsupported.group(1)}), which segrun "
                         "does not load; if you trust the file, save its tensors alone: torch.save(torch.load(PATH, "
                         "weights_only=False)['state_dict'], 'weights.pth')")
    if "Unsupported operand" in text and _starts_like_a_pickle(path):
        return UserError(f"{path}: a pickle that is not a PyTorch checkpoint (torch's safe loader cannot read it); "
                         "segrun reads files written by torch.save")
    return UserError(f"{path}: not a readable PyTorch checkpoint: truncated, damaged, or not written by torch.save "
                     f"({error.__class__.__name__})")


def _starts_like_a_pickle(path: Path) -> bool:
    """Whether the file begins with pickle's PROTO opcode (protocol 2 to 5), as a plain pickle does."""
    with open(path, "rb") as file:
        head = file.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def read_checkpoint(path: Path):
    """Whatever the file holds, loaded with torch's weights_only (tensors, plain containers and numpy
    scalars, never code); a missing, unreadable or refused file is a UserError naming it and why."""
    if not path.is_file():
        raise UserError(f"{path}: {why_not_there(path, 'checkpoint file')}")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_numpy_scalars()):
            warnings.simplefilter("ignore")  # torch's note on a pickle protocol it was not written with
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        raise _refusal(path, error) from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = read_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: holds no state dict of tensors")
    return state


# What Lightning writes into every checkpoint of a run, beside the weights; resuming needs them all.
TRAINING_STATE = ("epoch", "global_step", "optimizer_states", "loops")


def _differences(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str | None:
    """Where `state` does not fill `own` exactly (missing, unexpected, other shape), or None."""
    missing = set(own) - set(state)
    unexpected = set(state) - set(own)
    mismatched = [key for key in set(own) & set(state) if own[key].shape != state[key].shape]
    if not (missing or unexpected or mismatched):
        return None
    return (f"missing: {_short_list(missing)}; unexpected: {_short_list(unexpected)}; "
            f"shape differs: {_short_list(mismatched)}")


def check_training_checkpoint(task: nn.Module, path: Path) -> tuple[int, int]:
    """(epoch, step) of a checkpoint that training can resume `task` (the LightningModule) from:
    readable, with Lightning's training state, and weights that fill the task exactly; else a
    UserError saying what is wrong with it."""
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{path}: holds no state dict of tensors")
    absent = [key for key in TRAINING_STATE if key not in checkpoint]
    if absent:
        raise UserError(f"{path}: not a training checkpoint (no {', '.join(absent)})")
    differences = _differences(task.state_dict(), checkpoint["state_dict"])
    if differences:
        raise UserError(f"{path}: holds another model ({differences})")
    return int(checkpoint["epoch"]), int(checkpoint["global_step"])


def load_run_checkpoint(task: nn.Module, path: Path) -> None:
    """A checkpoint segrun trained (weights of the model and the losses' buffers) into its task;
    a file that does not read or does not fit the run's model exactly is a UserError."""
    state = read_state_dict(path)
    differences = _differences(task.state_dict(), state)
    if differences:
        raise UserError(f"{path}: does not fit this run's model ({differences}); is it from another run?")
    task.load_state_dict(state)


def _model_tensors(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(the model's tensors, keys that are not the model's). `module.` (DataParallel) is dropped
    from every key. Where keys sit under `model.` (a LightningModule's self.model, or
    HRNet-Semantic-Segmentation's FullModel), only those are the model's: the rest is the
    wrapper's own state (losses' class weights, metrics)."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if not any(key.startswith("model.") for key in state):
        return state, []
    return ({key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.")},
            [key for key in state if not key.startswith("model.")])


def _candidate_names(key: str) -> list[str]:
    """Names a model key of a checkpoint may have in a segrun model, most specific first."""
    module, _, tensor = key.rpartition(".")
    if module in _FLAT_OCR_MODULES:
        return [f"{_FLAT_OCR_MODULES[module]}.{tensor}"]
    if "last_layer." in key:  # HRNetV2's head; as the OCR auxiliary head (NVIDIA's name; HRNet-OCR starting from HRNetV2)
        rest = key.split("last_layer.", 1)[1]
        return [f"head.{rest}", *_candidate_names(f"aux_head.{rest}")]
    # an SMP architecture (segrun.models.smp_architectures) holds SMP's model as `network`: its
    # encoder's weights (a timm or SMP encoder file) and SMP's own saved models fit there
    return [key, f"backbone.{key}", f"ocr.{key}", f"network.encoder.{key}", f"network.{key}"]


def _short_list(keys, limit: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "") if keys else "none"


@attrs.frozen
class _Matching:
    """How a checkpoint's tensors map onto a model: `loaded` by the model's names, and the keys
    that did not load (checkpoint keys for unexpected and ignored, model keys otherwise)."""
    source: Path
    loaded: dict[str, torch.Tensor]
    missing: set[str]
    unexpected: list[str]
    mismatched: list[str]
    ignored: list[str]
    skipped: list[str]  # model names left out on purpose (model.pretrained_skip)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        return (f"{len(self.loaded)} tensors from {self.source}; missing: {_short_list(self.missing)}; "
                f"unexpected: {_short_list(self.unexpected)}; shape differs: {_short_list(self.mismatched)}"
                + (f"; not model weights, ignored: {_short_list(self.ignored)}" if self.ignored else "")
                + (f"; left out (model.pretrained_skip): {_short_list(self.skipped)}" if self.skipped else ""))


def skipped_by(name: str, prefixes) -> bool:
    """Whether the model name `name` falls under one of the dotted `prefixes`."""
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def _match(model: nn.Module, state: dict[str, torch.Tensor], source: Path, strict_backbone: bool,
           skip=()) -> _Matching:
    """Map every model tensor of `state` to the model's name for it, where one exists with the same
    shape and is not under a prefix in `skip`. With strict_backbone, a backbone tensor of another
    shape is an error (the wrong backbone)."""
    own = model.state_dict()
    tensors, ignored = _model_tensors(state)
    loaded, unexpected, mismatched, skipped = {}, [], [], []
    for key, value in tensors.items():
        name = next((candidate for candidate in _candidate_names(key) if candidate in own), None)
        if name is None:
            unexpected.append(key)
        elif skipped_by(name, skip):
            skipped.append(name)
        elif own[name].shape != value.shape:
            if strict_backbone and name.startswith(("backbone.", "network.encoder.")):
                raise UserError(f"{source}: {key} has shape {list(value.shape)} but the model's {name} is "
                                f"{list(own[name].shape)}; the checkpoint is for another backbone than model.backbone")
            mismatched.append(name)
        else:
            loaded[name] = value
    return _Matching(source, loaded, set(own) - set(loaded), unexpected, mismatched, ignored, skipped)


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: Path, strict_backbone: bool,
                  skip=()) -> str:
    """Copy every tensor of `state` whose mapped name exists in the model with the same shape (see
    `_match`). Returns a one-line summary of what was loaded, skipped and left missing."""
    matching = _fitting(model, state, source, strict_backbone, skip)
    model.load_state_dict(matching.loaded, strict=False)
    return matching.summary()


def _fitting(model: nn.Module, state: dict[str, torch.Tensor], source: Path, strict_backbone: bool,
             skip=()) -> _Matching:
    """`_match`, where a file none of whose tensors fit is an error: the checkpoint of another model."""
    matching = _match(model, state, source, strict_backbone, skip)
    if not matching.loaded:
        raise UserError(f"{source}: none of its tensors fit this model ({matching.summary()}); it is the checkpoint "
                        "of another model")
    return matching


def describe_start(model: nn.Module, path: Path, kind: str, skip=()) -> str:
    """What load_pretrained ("pretrained", leaving out `skip`) or load_init ("init") would load from
    `path`, without loading it: the model may be built on the meta device. Errors as theirs."""
    return f"{kind}: " + _fitting(model, read_state_dict(path), path, strict_backbone=kind == "pretrained",
                                  skip=skip).summary()


def load_pretrained(model: nn.Module, path: Path, skip=()) -> str:
    """Published weights (see the module docstring), but those under the dotted name prefixes in
    `skip`; a backbone shape mismatch is an error."""
    return "pretrained: " + load_matching(model, read_state_dict(path), path, strict_backbone=True, skip=skip)


def load_init(model: nn.Module, path: Path) -> str:
    """A segrun checkpoint (the one `init` names, see run_folder.init_checkpoint): every tensor
    whose name and shape match is loaded, e.g. all but the classifier of a model with other classes."""
    return "init: " + load_matching(model, read_state_dict(path), path, strict_backbone=False)


def load_trained(model: nn.Module, path: Path) -> str:
    """The weights of a whole trained model, in any layout of the module docstring: every tensor of
    the model must come from the file and every model tensor of the file must fit, else nothing is
    loaded and the error names what differs. BatchNorm's `num_batches_tracked` counters, which files
    of PyTorch 0.4 (HRNet-Semantic-Segmentation's master branch) do not hold and which evaluation
    does not use, are filled with zeros, and the summary says so; such a file's BatchNorm weights are
    taken as its InPlaceABN applied them (|weight| + 1e-5). A file in NVIDIA's layout loaded
    into a model resizing with align_corners true gets a note: NVIDIA's code resizes without."""
    state = read_state_dict(path)
    matching = _match(model, state, path, strict_backbone=False)
    own = model.state_dict()
    counters = {name for name in matching.missing if name.endswith("num_batches_tracked")}
    matching = attrs.evolve(matching, loaded={**matching.loaded, **{name: torch.zeros_like(own[name]) for name in counters}},
                            missing=matching.missing - counters)
    if not matching.complete:
        raise UserError(f"{path}: does not fit this model ({matching.summary()}); check model.name, model.backbone "
                        "and the dataset's number of classes against what the file was trained as")
    notes = [f"BatchNorm's num_batches_tracked filled with 0 in {len(counters)} layers (the file predates them; "
             "evaluation does not use them)"] if counters else []
    if _inplace_abn_file(state):
        gammas = [name for name in matching.loaded
                  if name.endswith(".weight") and name.removesuffix("weight") + "running_var" in matching.loaded]
        matching.loaded.update({name: matching.loaded[name].abs() + INPLACE_ABN_EPS for name in gammas})
        notes.append(f"BatchNorm weights of {len(gammas)} layers taken as |weight| + {INPLACE_ABN_EPS:g}, as the "
                     "InPlaceABN of HRNet-Semantic-Segmentation's master branch applies them")
    model.load_state_dict(matching.loaded)
    if _nvidia_layout(state) and getattr(model, "align_corners", False):
        notes.append("a file in NVIDIA's layout (module.backbone, module.ocr): NVIDIA trains and evaluates with "
                     "align_corners false (its config.py), this spec's model.align_corners is true, so predictions "
                     "differ from NVIDIA's; specs/published/nvidia_cityscapes_ms_ocr.toml has NVIDIA's settings")
    return "weights: " + matching.summary() + "".join(f"; {note}" for note in notes)


# HRNet-Semantic-Segmentation's master branch normalises with InPlaceABNSync(activation="none"),
# whose kernels scale by |weight| + eps (its inplace_abn_cpu.cpp and inplace_abn_cuda.cu), not by
# the weight as torch's BatchNorm does.
INPLACE_ABN_EPS = 1e-5


def _inplace_abn_file(state: dict) -> bool:
    """A file of HRNet-Semantic-Segmentation's master branch: HRNetV2's head as `last_layer` (released
    under `model.` or not) and no BatchNorm counter (InPlaceABN keeps none; the HRNet-OCR branch's
    and the study's files, trained with torch's BatchNorm, hold them)."""
    return (any(key.removeprefix("model.").startswith("last_layer.") for key in state)
            and not any(key.endswith("num_batches_tracked") for key in state))


def _nvidia_layout(state: dict) -> bool:
    """NVIDIA/semantic-segmentation's checkpoints: the DataParallel `module.` prefix over a trunk
    under `backbone.` and NVIDIA's OCR block under `ocr.` (the study's and HRNet-Seg's files have
    `model.` or no prefix)."""
    return any(key.startswith("module.backbone.") for key in state) and any(key.startswith("module.ocr.") for key in state)
