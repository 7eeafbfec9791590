"""Writing a file so that it is either whole or not there: bytes go to a temporary file beside
it, which is then renamed over it (a rename within a folder is atomic). Every file segrun writes
into a run folder or a results folder goes through here."""
import io
import os
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_figure(figure, path: Path, dpi: int = 100) -> None:
    """A matplotlib figure, in the format its suffix names (else matplotlib's default), written atomically."""
    image = io.BytesIO()
    figure.savefig(image, format=path.suffix.removeprefix(".") or None, dpi=dpi)
    write_atomically(path, image.getvalue())
