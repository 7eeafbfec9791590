"""How segrun finds its compiled ops: an editable install whose csrc/ changed builds anew, and a
build that fails warns once, with the compiler's first error line, and the PyTorch ops run."""
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from segrun.ops import extension

REPO = Path(__file__).resolve().parents[1]


def test_an_ahead_of_time_build_older_than_csrc_is_not_loaded(tmp_path, monkeypatch):
    sources = tmp_path / "csrc"
    shutil.copytree(extension.CSRC, sources)
    monkeypatch.setattr(extension, "CSRC", sources)
    next(sources.rglob("*.cpp")).touch()  # a source edited after the build
    built = tmp_path / "_C.so"
    built.write_bytes(b"not loaded: it is older than the sources")
    old = time.time() - 3600
    os.utime(built, (old, old))
    monkeypatch.setattr(extension.importlib.util, "find_spec",
                        lambda name: types.SimpleNamespace(origin=str(built)) if name == "segrun._C" else None)
    found = extension._load_ahead_of_time()
    assert not found.loaded and found.reason == f"{built} is older than {sources}"
    # sources as old as the build: it is the build to load (here it fails to, being no library)
    for path in sources.rglob("*"):
        os.utime(path, (old - 60, old - 60))
    assert "does not load" in extension._load_ahead_of_time().reason


BROKEN_BUILD = """
import warnings
import torch
from segrun import ops
from segrun.ops import extension
extension.CSRC = extension.Path(__import__("sys").argv[1])
logits, target = torch.randn(2, 3, 5, 6), torch.randint(0, 3, (2, 5, 6))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    first = ops.confusion_matrix(logits, target, 3)
    second = ops.confusion_matrix(logits, target, 3)
assert torch.equal(first, ops.TORCH_OPS["confusion_matrix"](logits, target, 3)) and torch.equal(first, second)
for warning in caught:
    print("WARNING:", warning.message)
"""


@pytest.mark.skipif(not any(shutil.which(name) for name in ("c++", "g++")), reason="no C++ compiler")
def test_a_failed_build_warns_once_with_the_compilers_first_error_and_the_pytorch_ops_run(tmp_path):
    sources = tmp_path / "csrc"
    shutil.copytree(extension.CSRC, sources)
    broken = sorted((sources / "ops").glob("*.cpp"))[0]
    broken.write_text(broken.read_text() + "\nint this_does_not_compile = undeclared_name;\n")
    environment = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "cache"), "SEGRUN_OPS": "auto",
                   "SEGRUN_BUILD_CUDA": "0", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", BROKEN_BUILD, str(sources)], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stdout.splitlines() if line.startswith("WARNING:")]
    assert len(warnings) == 1, result.stdout
    assert warnings[0].startswith("WARNING: segrun's C++/CUDA ops are not available, the PyTorch implementations run: ")
    assert "error" in warnings[0] and "undeclared_name" in warnings[0]
