"""Lightning's (and a few of torch's) messages that say nothing true or useful in a segrun run,
silenced by their text; install() runs where segrun starts a Trainer (training, evaluation) or a
benchmark. Everything else Lightning says
is kept: the weights it loads for an evaluation and from where (segrun's own line says where
training resumes from), why fitting stopped, a GPU or TPU present but not used."""
import logging
import os
import re
import warnings

# Lightning's logging (rank_zero_info and its own loggers), by logger.
_LOGGED = {
    "pytorch_lightning.utilities.rank_zero": [
        r"💡 Tip: ",  # advertises a cloud logger; segrun logs to TensorBoard and CSV in the run folder
        r"GPU available: False, used: False",  # no GPU: segrun's "trainer on cpu: ..." line says so
        r"TPU available: False, using: 0 TPU cores",  # segrun runs on no TPU
        # said twice for one checkpoint: "Restoring states from ... at X" and "Restored all states
        # from the checkpoint at X" (training: segrun's "resuming X from ..." says it) or "Loaded
        # model weights from the checkpoint at X" (evaluation: kept)
        r"Restoring states from the checkpoint path at ",
        r"Restored all states from the checkpoint at ",
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
    # an epoch shorter than trainer.log_every_n_steps is still logged at its end
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    # no validation ran while fitting (trainer.max_steps): segrun validates the final weights after it
    r"`ModelCheckpoint\(monitor='val/mIoU'\)` could not find the monitored key",
    # torch's inductor calling its own deprecated helper (torch.compile: the benchmarks, trainer.compile)
    r"`torch._prims_common.check` is deprecated",
]

# Outside a SLURM job, srun on the PATH says nothing about this run (inside one, Lightning's hint
# that a multi-process job needs srun stays).
_WARNED_OUTSIDE_SLURM = [r"The `srun` command is available on your system but is not used"]


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
    for message in _WARNED + (_WARNED_OUTSIDE_SLURM if "SLURM_JOB_ID" not in os.environ else []):
        warnings.filterwarnings("ignore", message=message)  # a repeated filter replaces the earlier one
