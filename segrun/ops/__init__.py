"""Hot operations behind one public function each. Every op has a PyTorch implementation that is
its specification (`*_torch`) and a compiled one in the C++/CUDA library of csrc/ (see
`segrun.ops.extension` for how it is found or built, and SEGRUN_OPS for choosing)."""
import torch

from segrun.ops import extension
from segrun.ops.attention_fuse import attention_fuse, attention_fuse_torch
from segrun.ops.confusion_matrix import confusion_matrix, confusion_matrix_torch
from segrun.ops.rmi_lower_bound import RADIUS as RMI_RADIUS
from segrun.ops.rmi_lower_bound import rmi_lower_bound, rmi_lower_bound_torch

OPS = {"confusion_matrix": confusion_matrix, "rmi_lower_bound": rmi_lower_bound, "attention_fuse": attention_fuse}
TORCH_OPS = {"confusion_matrix": confusion_matrix_torch, "rmi_lower_bound": rmi_lower_bound_torch,
             "attention_fuse": attention_fuse_torch}


def backends() -> list[tuple[str, str, str, str]]:
    """(op, device, implementation, why) for every op and device of this machine, as `segrun
    doctor` prints it."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for name in OPS:
        for device in devices:
            use, reason = extension.choice(name, device)
            if use and name == "rmi_lower_bound":
                reason += f" (radius {RMI_RADIUS}; other radii run PyTorch)"
            rows.append((name, device, ("C++" if device == "cpu" else "CUDA") if use else "torch", reason))
    return rows


__all__ = ["OPS", "RMI_RADIUS", "TORCH_OPS", "attention_fuse", "backends", "confusion_matrix", "rmi_lower_bound"]
