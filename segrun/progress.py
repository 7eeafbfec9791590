"""What a run shows while it works and what it reports: progress on stderr, results on stdout, so
`segrun train ... > log` keeps the results and leaves the bars on the terminal. Without a terminal
the bars become one line per tenth of each epoch, validation or test, instead of a line of
carriage returns thousands of characters long."""
import sys
from contextlib import redirect_stdout
from typing import Any

from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.utilities import rank_zero_only
from tqdm import tqdm

from segrun.terminal import STEPS_WITHOUT_A_TERMINAL, Lines


@rank_zero_only
def print_result(text: str) -> None:
    """A result on stdout, once (rank zero), without breaking a progress bar drawn on the same terminal."""
    tqdm.write(text, file=sys.stdout)


class ProgressBar(TQDMProgressBar):
    """Lightning's bars on stderr; where stderr is not a terminal, periodic lines (see terminal.Lines)."""

    def __init__(self):
        super().__init__()
        self.lines = not sys.stderr.isatty()
        self.stream = Lines(sys.stderr) if self.lines else sys.stderr

    # Lightning's bars write to sys.stdout as it is when they are made.
    def init_sanity_tqdm(self):
        with redirect_stdout(self.stream):
            return super().init_sanity_tqdm()

    def init_train_tqdm(self):
        with redirect_stdout(self.stream):
            return super().init_train_tqdm()

    def init_validation_tqdm(self):
        with redirect_stdout(self.stream):
            return super().init_validation_tqdm()

    def init_test_tqdm(self):
        with redirect_stdout(self.stream):
            return super().init_test_tqdm()

    def init_predict_tqdm(self):
        with redirect_stdout(self.stream):
            return super().init_predict_tqdm()

    def _should_update(self, current: int, total: int) -> bool:
        if not self.lines:
            return super()._should_update(current, total)
        if not self.is_enabled or total in (None, float("inf")):  # a loader without a length: no tenths
            return False
        # at each tenth of the total (and at the end)
        return current * STEPS_WITHOUT_A_TERMINAL // total > (current - 1) * STEPS_WITHOUT_A_TERMINAL // total

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        # A run resumed mid-epoch gets no on_train_epoch_start from Lightning, and so no epoch bar:
        # the bar says "Training 0/?" and, without a total, shows no progress for that epoch.
        if self.train_progress_bar is not None and self.train_progress_bar.total is None:
            self.on_train_epoch_start(trainer)
            self.train_progress_bar.n = batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.lines:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # one line with the new count and the new metrics (Lightning redraws for each)
        bar = self.train_progress_bar
        current = batch_idx + 1
        if bar is not None and self._should_update(current, bar.total):
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.n = current
            bar.refresh()
