"""Lightning's messages that say nothing true or useful in a segrun run, silenced by their text;
install() runs where segrun starts a Trainer (training, evaluation). Everything else Lightning says
is kept: what it restores and from where, why fitting stopped, a GPU or TPU present but not used,
"Detected KeyboardInterrupt" (said at once, while the checkpoint is still being written)."""
import logging
import re
import warnings

# Lightning's logging (rank_zero_info and its own loggers), by logger.
_LOGGED = {
    "pytorch_lightning.utilities.rank_zero": [
        r"💡 Tip: ",  # advertises a cloud logger; segrun logs to TensorBoard and CSV in the run folder
        r"GPU available: False, used: False",  # no GPU: segrun's "trainer on cpu: ..." line says so
        r"TPU available: False, using: 0 TPU cores",  # segrun runs on no TPU
    ],
    "pytorch_lightning.trainer.connectors.checkpoint_connector": [
        # interrupted.ckpt holds the full training state on purpose (the run resumes from it); segrun
        # reads checkpoints with weights_only=True
        r"`weights_only` was not set, defaulting to `False`",
    ],
}

# Lightning's warnings, by message.
_WARNED = [
    # Lightning's own use of a torch API, nothing a user can change
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # a run folder's checkpoints/ is segrun's: it holds the run being resumed or moved aside files
    r"Checkpoint directory .* exists and is not empty",
]


class _Unless(logging.Filter):
    def __init__(self, patterns: list[str]):
        super().__init__()
        self.pattern = re.compile("|".join(patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage().lstrip())


_FILTERS = {name: _Unless(patterns) for name, patterns in _LOGGED.items()}


def install() -> None:
    """Silence the messages above in this process (again: no effect)."""
    for name, message_filter in _FILTERS.items():
        logging.getLogger(name).addFilter(message_filter)  # once: addFilter skips a filter it holds
    for message in _WARNED:
        warnings.filterwarnings("ignore", message=message)  # a repeated filter replaces the earlier one
