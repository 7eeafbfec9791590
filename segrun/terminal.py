"""Progress where it is read: redrawn bars on a terminal, and where stderr is a file or a pipe (a
scheduler's log) a line per tenth of the work instead of carriage returns thousands of characters
long. Light to import: the data steps use it."""
import re
import sys

from tqdm import tqdm

STEPS_WITHOUT_A_TERMINAL = 10  # lines per bar where stderr is a file or a pipe
_CURSOR_MOVES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # tqdm's, for bars stacked on a terminal


class Lines:
    """A file for tqdm that turns each redraw (a carriage return and the bar) into a line of its
    own, and drops cursor moves, blank redraws and repeats of the line before."""

    def __init__(self, stream):
        self.stream = stream
        self.last = None

    def write(self, text: str) -> None:
        line = _CURSOR_MOVES.sub("", text).replace("\r", "").strip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def bar(items, description: str, unit: str, enabled: bool = True, total: int | None = None):
    """tqdm over `items` for data work (synthesis, preparation, reading a split): on stderr, none at
    all when there is nothing to do, and without a terminal one line per tenth instead of redraws."""
    total = len(items) if total is None else total
    if sys.stderr.isatty():
        return tqdm(items, desc=description, unit=unit, total=total, disable=not enabled or total == 0, file=sys.stderr)
    return tqdm(items, desc=description, unit=unit, total=total, disable=not enabled or total == 0,
                file=Lines(sys.stderr), mininterval=0, miniters=max(1, total // STEPS_WITHOUT_A_TERMINAL))
