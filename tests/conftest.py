import os
from pathlib import Path

import pytest

def reference_dir() -> Path:
    """../shared/reference beside the checkout (SEGRUN_REFERENCE overrides)."""
    repo = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("SEGRUN_REFERENCE", repo.parent / "shared" / "reference"))


@pytest.fixture
def reference():
    folder = reference_dir()
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{folder}: the reference vectors must be present in CI")
        pytest.skip(f"{folder}: reference vectors not present in this checkout")
    return folder


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def write_spec(tmp_path):
    """write_spec(text, name="spec.toml") -> path of a spec file in a temporary folder."""
    def write(text: str, name: str = "spec.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def minimal_spec() -> str:
    """The smallest valid spec; tests append tables to it."""
    return 'name = "tiny"\n[data]\nroot = "somewhere"\n'

