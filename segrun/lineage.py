"""Where a run came from: recorded in its metrics.json so any figure can be traced and repeated."""
import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from segrun.version import __version__

PACKAGES = ("torch", "pytorch-lightning", "torchmetrics", "timm", "albumentations", "numpy")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def segrun_commit(source: Path = Path(__file__).resolve().parent) -> str | None:
    """The git commit segrun runs from, with "-dirty" when tracked files differ from it; else
    $SEGRUN_COMMIT (for a copy of the code without .git, as on a lent GPU machine), else None."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(source), *args], check=False, capture_output=True, text=True, timeout=10)

    outside_checkout = os.environ.get("SEGRUN_COMMIT") or None
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return outside_checkout
        changed = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return outside_checkout
    return head.stdout.strip() + ("-dirty" if changed else "")


def package_versions() -> dict[str, str | None]:
    versions = {"segrun": __version__}  # also when run from a checkout that pip never installed
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_names() -> list[str]:
    if torch.cuda.is_available():
        return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    return [f"cpu ({platform.processor() or platform.machine()})"]


def peak_gpu_memory_gb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None
