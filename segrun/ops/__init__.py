"""Hot operations behind one public function each. Every op has a PyTorch implementation that is
its specification (`*_torch`) and a compiled one in the C++/CUDA library of csrc/ (see
`segrun.ops.extension` for how it is found or built, and SEGRUN_OPS for choosing)."""
import torch

from segrun.ops import extension
from segrun.ops.attention_fuse import attention_fuse, attention_fuse_torch
from segrun.ops.confusion_matrix import confusion_matrix, confusion_matrix_torch
from segrun.ops.rmi_lower_bound import rmi_lower_bound, rmi_lower_bound_torch

OPS = {"confusion_matrix": confusion_matrix, "rmi_lower_bound": rmi_lower_bound, "attention_fuse": attention_fuse}
TORCH_OPS = {"confusion_matrix": confusion_matrix_torch, "rmi_lower_bound": rmi_lower_bound_torch,
             "attention_fuse": attention_fuse_torch}


def backends() -> list[tuple[str, str, str, str]]:
    """(op, device, implementation, why) for every op and device of this machine, as `segrun
    doctor` prints it. Loads (and if need be builds) the library unless SEGRUN_OPS=torch."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    chosen = extension.mode()
    found = extension.library() if chosen != "torch" else None
    rows = []
    for name in OPS:
        for device in devices:
            if chosen == "torch":
                rows.append((name, device, "torch", "SEGRUN_OPS=torch"))
            elif not found.loaded:
                rows.append((name, device, "torch", found.reason))
            elif chosen == "auto" and device == "cpu":
                rows.append((name, device, "torch", "SEGRUN_OPS=auto runs PyTorch on the CPU (SEGRUN_OPS=ext: C++)"))
            elif chosen == "auto" and device == "cuda" and name in extension.AUTO_SKIPS:
                rows.append((name, device, "torch", extension.AUTO_SKIPS[name]))
            elif device == "cuda" and not found.cuda:
                rows.append((name, device, "torch", f"the library has no CUDA kernels ({found.how})"))
            else:
                note = " (radius 3; other radii run PyTorch)" if name == "rmi_lower_bound" else ""
                rows.append((name, device, "C++" if device == "cpu" else "CUDA", found.how + note))
    return rows


__all__ = ["OPS", "TORCH_OPS", "attention_fuse", "backends", "confusion_matrix", "rmi_lower_bound"]
