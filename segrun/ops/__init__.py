"""Hot operations behind one public function each. Every op has a pure-PyTorch implementation
that is its specification; `backends()` says which implementation each op runs and why."""
from segrun.ops.attention_fuse import attention_fuse
from segrun.ops.confusion_matrix import confusion_matrix
from segrun.ops.rmi_lower_bound import rmi_lower_bound

OPS = {"confusion_matrix": confusion_matrix, "rmi_lower_bound": rmi_lower_bound, "attention_fuse": attention_fuse}


def backends() -> dict[str, tuple[str, str]]:
    """op name -> (implementation, reason), as `segrun doctor` prints it."""
    reason = "segrun has no compiled extension yet; the PyTorch implementation runs on every device"
    return {name: ("torch", reason) for name in OPS}


__all__ = ["OPS", "attention_fuse", "backends", "confusion_matrix", "rmi_lower_bound"]
