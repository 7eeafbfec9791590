"""What a run shows while it works and what it reports: progress on stderr, results on stdout, so
`segrun train ... > log` keeps the results and leaves the bars on the terminal."""
import sys
from contextlib import redirect_stdout
from typing import Any

from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.utilities import rank_zero_only
from tqdm import tqdm


@rank_zero_only
def print_result(text: str) -> None:
    """A result on stdout, once (rank zero), without breaking a progress bar drawn on the same terminal."""
    tqdm.write(text, file=sys.stdout)


class ProgressBar(TQDMProgressBar):
    """Lightning's bars on stderr."""

    def __init__(self):
        super().__init__()
        self.stream = sys.stderr

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
