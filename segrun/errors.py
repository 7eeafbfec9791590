"""Errors caused by what a user wrote or pointed at. The CLI prints them as one line and exits 2."""
import difflib
import errno
import os
from pathlib import Path


class UserError(Exception):
    """A problem the user can fix: a bad spec, a missing dataset, a run folder in the way."""


class Stopped(Exception):
    """A command stopped on purpose before it finished (training on a scheduler's signal): the CLI
    prints its message, if any, as one line and exits with `exit_status`."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


class DatasetError(UserError):
    """A dataset folder is missing, incomplete or not prepared."""


def closest(word, choices) -> str | None:
    """The choice spelled most like `word`, or None when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word, choices) -> str:
    """'; did you mean X?' for the closest choice, or '' when nothing is close."""
    match = closest(word, choices)
    return f"; did you mean {match}?" if match else ""


def why_not_there(path, what: str = "file") -> str:
    """Why `path` cannot be opened, in a few words: a symbolic link that loops, a link to something
    that is not there, or no such `what`."""
    path = Path(path)
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python before 3.13 says a loop so
            return "a symbolic link that loops back on itself"
        except OSError as error:
            if error.errno == errno.ELOOP:
                return "a symbolic link that loops back on itself"
            return f"a symbolic link to {os.readlink(path)}, which is not there"
    return f"no such {what}"
