"""Writing a file so that it is either whole or not there: bytes go to a temporary file beside
it, under a name no other writer uses, which is then renamed over it (a rename within a folder is
atomic). Every file segrun writes into a run folder or a results folder goes through here. A full
disk is one line naming the file and the space it needed, and leaves no temporary file behind."""
import errno
import io
import os
import shutil
import tempfile
from pathlib import Path

from segrun.errors import UserError


class DiskFull(UserError):
    """A file could not be written for lack of space; nothing of it is left on the disk."""


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def _mode_of_a_new_file() -> int:
    """What open() would give a new file: 0666 less the process's umask (read by setting it back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: Path, data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    temporary = Path(name)
    try:
        os.fchmod(handle, _mode_of_a_new_file())  # mkstemp's 0600 would hide the file from the user's group
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(path.parent).free
            raise DiskFull(f"{path}: no space left on the disk to write it ({_megabytes(len(data))} needed, "
                           f"{_megabytes(free)} free); free some space, then run the same command again") from None
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_figure(figure, path: Path, dpi: int = 100) -> None:
    """A matplotlib figure, in the format its suffix names (else matplotlib's default), written atomically."""
    image = io.BytesIO()
    figure.savefig(image, format=path.suffix.removeprefix(".") or None, dpi=dpi)
    write_atomically(path, image.getvalue())
