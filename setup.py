"""Build script. Metadata lives in pyproject.toml; this file adds the C++/CUDA operator library.

With torch importable while building (`pip install --no-build-isolation -e .`), a CUDA build of
torch and nvcc, csrc/ is compiled ahead of time into segrun/_C*.so (architectures from
TORCH_CUDA_ARCH_LIST, default 8.0, 8.6, 9.0 and PTX). Otherwise nothing is compiled here and
segrun builds csrc/ just in time on first use (segrun/ops/extension.py): installing never fails
for lack of a compiler, a toolkit or a GPU. SEGRUN_BUILD_OPS=0 skips the ahead-of-time build.
"""
import importlib.util
import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def say(message: str) -> None:
    print(f"segrun: {message}", file=sys.stderr)


def load_build_helpers():
    """segrun/ops/extension.py, without importing the segrun package (it needs only torch)."""
    spec = importlib.util.spec_from_file_location("segrun_build_helpers", ROOT / "segrun" / "ops" / "extension.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def operator_library() -> dict:
    if os.environ.get("SEGRUN_BUILD_OPS", "1") == "0":
        say("SEGRUN_BUILD_OPS=0: the operator library is not built ahead of time")
        return {}
    try:
        import torch
    except ImportError:
        say("torch is not importable while building (pip's build isolation): csrc/ will be compiled on first use")
        return {}
    helpers = load_build_helpers()
    home = helpers.cuda_home()
    if not torch.version.cuda or home is None:
        say("no CUDA build of torch or no nvcc: csrc/ will be compiled on first use where it can be")
        return {}
    os.environ.setdefault("CUDA_HOME", str(home))
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", helpers.DEFAULT_ARCH_LIST)
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    flags = helpers.build_flags(with_cuda=True)
    extension = CUDAExtension(
        "segrun._C", [str(path.relative_to(ROOT)) for path in helpers.sources(with_cuda=True)],
        include_dirs=flags["include_dirs"], extra_compile_args={"cxx": flags["cxx"], "nvcc": flags["nvcc"]},
        extra_link_args=flags["ldflags"])
    say(f"building the operator library ahead of time with nvcc in {home}")
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildExtension.with_options(use_ninja=True)}}


setup(**operator_library())
