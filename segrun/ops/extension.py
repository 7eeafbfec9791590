"""Finding, building and loading segrun's C++/CUDA operator library (csrc/).

Three ways, tried in order: the library `pip install --no-build-isolation` built ahead of time
(segrun/_C*.so); a just-in-time build of csrc/ with ninja, cached by torch.utils.cpp_extension;
or none, and the PyTorch implementations run. `SEGRUN_OPS` chooses: `auto` (default) uses the
library where it measured faster than PyTorch (AUTO: per op and device), `ext` uses the library on
every device (building it if needed, failing loudly if it cannot), `torch` never loads it.
"""
import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import attrs
import torch

MODES = ("auto", "ext", "torch")
CSRC = Path(__file__).resolve().parents[2] / "csrc"
DEFAULT_ARCH_LIST = "8.0;8.6;9.0+PTX"


class ExtensionError(RuntimeError):
    """SEGRUN_OPS=ext was asked for and the library could not be loaded."""


@attrs.frozen
class Library:
    """What loading the operator library gave: `how` it was loaded, or `reason` it was not."""
    loaded: bool
    how: str = ""
    reason: str = ""
    cuda: bool = False  # whether it holds the CUDA kernels


_lock = threading.Lock()
_library: Library | None = None
_python_parts: list[Callable[[], None]] = []


def after_loading(register: Callable[[], None]) -> Callable[[], None]:
    """Decorator for an op module's registrations of its Python parts (fake implementation,
    autograd formula, autocast rule), which need the op defined: run once the library is
    loaded, or now if it already is."""
    _python_parts.append(register)
    if _library is not None and _library.loaded:
        register()
    return register


_pytorch_only = False  # see pytorch_only()


@contextlib.contextmanager
def pytorch_only():
    """Inside the block every op runs its PyTorch implementation, whatever SEGRUN_OPS says: for
    graphs traced for export, which must hold no op of segrun's library (ONNX has no translation
    of it, and a .pt2 program would need the library wherever it is loaded)."""
    global _pytorch_only
    before, _pytorch_only = _pytorch_only, True
    try:
        yield
    finally:
        _pytorch_only = before


def mode() -> str:
    if _pytorch_only:
        return "torch"
    value = os.environ.get("SEGRUN_OPS", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ExtensionError(f"SEGRUN_OPS={value!r} is not one of {', '.join(MODES)}")
    return value


def cuda_home() -> Path | None:
    """The CUDA toolkit nvcc belongs to: $CUDA_HOME, else the folder above the real nvcc."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(os.path.realpath(nvcc)).parents[1]))
    candidates.append("/usr/local/cuda")
    for candidate in filter(None, candidates):
        home = Path(candidate)
        if (home / "bin" / "nvcc").is_file() and (home / "include" / "cuda_runtime.h").is_file():
            return home
    return None


def sources(with_cuda: bool) -> list[Path]:
    """Each op's torch file (csrc/ops/<op>.cpp: schema, checks, CPU implementation, CUDA glue) and,
    with CUDA, each op's kernels (csrc/cuda/<op>.cu)."""
    files = sorted((CSRC / "ops").glob("*.cpp"))
    if with_cuda:
        files += sorted((CSRC / "cuda").glob("*.cu"))
    return files


def build_flags(with_cuda: bool) -> dict:
    """Compiler and linker flags shared by the ahead-of-time and the just-in-time build."""
    # at::parallel_for spreads the CPU implementations over torch's OpenMP threads only in code
    # compiled with OpenMP; without it, it runs them on one thread.
    openmp = ["-fopenmp"] if torch.backends.openmp.is_available() and sys.platform.startswith("linux") else []
    cxx = ["-O3", *openmp] + (["-DSEGRUN_WITH_CUDA"] if with_cuda else [])
    # torch's default nvcc flags hide half/bfloat16 <-> float conversions; the kernels use them.
    nvcc = ["-O3", "-DSEGRUN_WITH_CUDA", "-U__CUDA_NO_HALF_OPERATORS__",
            "-U__CUDA_NO_HALF_CONVERSIONS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__", "-U__CUDA_NO_HALF2_OPERATORS__"]
    return {"cxx": cxx, "nvcc": nvcc, "ldflags": openmp, "include_dirs": [str(CSRC)]}


def _first_error_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() and "Error building extension" not in line:
            return line
    return lines[0] if lines else "unknown error"


def _load_ahead_of_time() -> Library | None:
    spec = importlib.util.find_spec("segrun._C")
    if spec is None or not spec.origin:
        return None
    built = Path(spec.origin).stat().st_mtime
    if CSRC.is_dir() and any(path.stat().st_mtime > built for path in CSRC.rglob("*") if path.is_file()):
        # An editable install whose sources changed since `pip install`: build them instead.
        return Library(False, reason=f"{spec.origin} is older than {CSRC}")
    try:
        torch.ops.load_library(spec.origin)
    except OSError as error:  # built against another torch, say
        return Library(False, reason=f"{spec.origin} does not load ({_first_error_line(str(error))})")
    return Library(True, how=f"ahead-of-time build {spec.origin}")


def _cuda_build(home: Path | None) -> tuple[bool, str]:
    """Whether the just-in-time build compiles the CUDA kernels too, and why (not)."""
    if home is None:
        return False, "no CUDA toolkit or a CPU build of torch"
    if torch.cuda.is_available():
        return True, f"a GPU and nvcc in {home}"
    if os.environ.get("SEGRUN_BUILD_CUDA") == "1":
        return True, f"SEGRUN_BUILD_CUDA=1, nvcc in {home}"
    return False, "no GPU here; SEGRUN_BUILD_CUDA=1 would build the CUDA kernels too"


def cache_name(with_cuda: bool, flags: dict) -> str:
    """The build's name in torch's extension cache: the sources' content, the flags and torch's
    version hashed, so checkouts with other sources never rebuild each other's library, and a change
    to csrc/ builds anew."""
    digest = hashlib.sha256(f"{torch.__version__} {with_cuda} {sorted(flags.items())}".encode())
    for path in sorted(CSRC.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(CSRC)).encode())
            digest.update(path.read_bytes())
    return f"segrun_ops_{digest.hexdigest()[:12]}"


class _NoCudaRuntimeNote(logging.Filter):
    # cpp_extension says "No CUDA runtime is found" on import wherever a toolkit but no GPU is: the
    # CPU build, or SEGRUN_BUILD_CUDA=1, is what segrun asked for there
    def filter(self, record: logging.LogRecord) -> bool:
        return "No CUDA runtime is found" not in record.getMessage()


def _build_just_in_time(why: str) -> Library:
    """Build csrc/ with ninja into torch's extension cache (once per content of csrc/); `why` says
    why no ahead-of-time build serves, for the one line said before a build."""
    home = cuda_home() if torch.version.cuda else None
    with_cuda, cuda_reason = _cuda_build(home)
    if with_cuda and "CUDA_HOME" not in os.environ:
        os.environ["CUDA_HOME"] = str(home)  # before cpp_extension guesses one on import
    logging.getLogger("torch.utils.cpp_extension").addFilter(_NoCudaRuntimeNote())
    from torch.utils import cpp_extension

    if not sources(with_cuda=False):
        return Library(False, reason=f"no C++ sources at {CSRC} (install from a source checkout to build them)")
    if not cpp_extension.is_ninja_available():
        return Library(False, reason="ninja is not installed (pip install ninja)")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return Library(False, reason="no C++ compiler found (set CXX or install g++)")
    if with_cuda:
        # cpp_extension reads the toolkit's location once, at import, which may have come first.
        cpp_extension.CUDA_HOME = str(home)
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
    flags = build_flags(with_cuda)
    name = cache_name(with_cuda, flags)
    cache = Path(cpp_extension._get_build_directory(name, verbose=False))
    if not (cache / f"{name}.so").is_file():
        kernels = "and CUDA kernels " if with_cuda else ""
        print(f"segrun: building its C++ ops {kernels}for these sources ({why}; CUDA: {cuda_reason}), once: "
              f"cached in {cache}", file=sys.stderr, flush=True)
    try:
        cpp_extension.load(name=name, sources=[str(path) for path in sources(with_cuda)],
                           extra_cflags=flags["cxx"], extra_cuda_cflags=flags["nvcc"], extra_ldflags=flags["ldflags"],
                           extra_include_paths=flags["include_dirs"], with_cuda=with_cuda,
                           is_python_module=False, verbose=False)
    except (RuntimeError, OSError, ImportError) as error:
        return Library(False, reason=f"just-in-time build failed: {_first_error_line(str(error))}")
    kind = f"with CUDA kernels: {cuda_reason}" if with_cuda else f"CPU only: {cuda_reason}"
    return Library(True, how=f"just-in-time build {name}, {kind}")


def library() -> Library:
    """Loads the operator library once per process (building it if need be) and says how."""
    global _library
    with _lock:
        if _library is None:
            if mode() == "torch":
                return Library(False, reason="SEGRUN_OPS=torch")
            found = _load_ahead_of_time()
            if found is None or not found.loaded:
                built = _build_just_in_time("no ahead-of-time build installed" if found is None else found.reason)
                if not built.loaded and found is not None:
                    built = attrs.evolve(built, reason=f"{found.reason}; {built.reason}")
                found = built
            if found.loaded:
                for register in _python_parts:
                    register()
                cuda = torch._C._dispatch_has_kernel_for_dispatch_key("segrun::attention_fuse", "CUDA")
                found = attrs.evolve(found, cuda=cuda)
            else:
                warnings.warn(f"segrun's C++/CUDA ops are not available, the PyTorch implementations run: {found.reason}",
                              stacklevel=3)
            _library = found
        return _library


# What `auto` runs, per op and device: the library's implementation where `segrun bench ops`
# measured it faster than PyTorch at the study's sizes, else PyTorch; and why, as `segrun doctor`
# prints it. CUDA: benchmarks/results/nvidia-h100-80gb-hbm3-2026-11-25.md; CPU:
# benchmarks/results/cpu-x86-64-2-threads-2026-11-30.md (forward and backward where there is one).
AUTO = {
    ("confusion_matrix", "cuda"): (True, "measured 3.5x faster than PyTorch on an H100"),
    ("rmi_lower_bound", "cuda"): (True, "measured 9.6x faster than the original formulation on an H100"),
    ("attention_fuse", "cuda"): (False, "its kernel measured slower than PyTorch's eager fusion on an H100 (3.0 "
                                        "against 2.1 ms; not yet measured since it changed); SEGRUN_OPS=ext uses it"),
    ("confusion_matrix", "cpu"): (True, "measured 5.1x faster than PyTorch on a 2-thread CPU"),
    ("rmi_lower_bound", "cpu"): (True, "measured 1.4x faster than PyTorch on a 2-thread CPU"),
    ("attention_fuse", "cpu"): (True, "measured 2.3x faster than PyTorch's eager fusion on a 2-thread CPU"),
}


def choice(op: str, device_type: str) -> tuple[bool, str]:
    """Whether `op` on tensors of `device_type` runs the library's implementation, and why (as
    `segrun doctor` prints it). Loads the library when the answer depends on it."""
    chosen = mode()
    if chosen == "torch":
        return False, "SEGRUN_OPS=torch"
    if device_type not in ("cpu", "cuda"):
        return False, f"the library has no implementation for {device_type} tensors"
    measured = ""
    if chosen == "auto":
        use, measured = AUTO[op, device_type]
        if not use:
            return False, f"SEGRUN_OPS=auto: {measured}"
    found = library()
    if not found.loaded:
        return False, found.reason
    if device_type == "cuda" and not found.cuda:
        return False, f"the library has no CUDA kernels ({found.how})"
    return True, f"{found.how}; SEGRUN_OPS=auto: {measured}" if measured else found.how


def use_extension(device: torch.device, op: str) -> bool:
    """Whether `op` on tensors of `device` runs the library's kernel (see SEGRUN_OPS); with
    SEGRUN_OPS=ext, a library that cannot run there is an error."""
    use, reason = choice(op, device.type)
    if not use and mode() == "ext":
        raise ExtensionError(f"SEGRUN_OPS=ext, but segrun's C++/CUDA {op} cannot run on {device.type}: {reason}")
    return use
