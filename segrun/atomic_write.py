"""Writing a file so that it is either whole or not there: bytes go to a temporary file beside
it, which is then renamed over it (a rename within a folder is atomic)."""
import os
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(data)
    os.replace(temporary, path)
