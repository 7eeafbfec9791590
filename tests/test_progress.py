"""What a run writes where: results on stdout, progress on stderr, without a terminal the
progress as short lines, and none of Lightning's messages that say nothing true to a segrun user."""
import logging
import warnings

from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from segrun import quiet
from segrun.cli import main


def test_results_go_to_stdout_and_progress_to_stderr_as_lines(tiny_spec, tmp_path, capsys):
    # capsys's stderr is not a terminal, as in `segrun train ... 2> log`
    path = tiny_spec(epochs=2, train_images=40)
    assert main([str(path), "--runs", str(tmp_path / "runs")]) == 0
    out, err = capsys.readouterr()
    assert "validation after epoch 0 (step 10)" in out and "validation after epoch 1 (step 20)" in out
    assert "metrics.json: mIoU" in out
    assert "it/s" not in out and "Epoch 0" not in out  # no progress in the results
    lightning_lines = [line for line in err.split("\n") if line.startswith(("Epoch", "Validation", "Sanity"))]
    assert lightning_lines and not any("\r" in line for line in lightning_lines)
    first_epoch = lightning_lines[next(i for i, line in enumerate(lightning_lines) if line.startswith("Epoch 0:")):]
    first_epoch = first_epoch[:next(i for i, line in enumerate(first_epoch) if line.startswith("Validation"))]
    # a line at the start, then one per tenth of the epoch's 10 steps with the loss
    assert [int(line.split("|")[2].split("/")[0]) for line in first_epoch] == list(range(11))
    assert all(line.startswith("Epoch 0:") and len(line) < 200 for line in first_epoch)
    assert all("train/loss" in line for line in first_epoch[1:])
    assert not any(noise in err for noise in ("Tip:", "GPU available", "TPU available", "LeafSpec"))


def test_quiet_silences_lightning_noise_and_keeps_what_is_true(caplog):
    quiet.install()
    quiet.install()  # twice, as a chain's stages do: the same filters
    said = ["💡 Tip: For seamless cloud logging", "GPU available: False, used: False",
            "GPU available: True (cuda), used: False", "TPU available: False, using: 0 TPU cores",
            "`Trainer.fit` stopped: `max_epochs=2` reached."]
    with caplog.at_level(logging.INFO):
        for message in said:
            rank_zero_info(message)
        logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector").info(
            "`weights_only` was not set, defaulting to `False`.")
    assert caplog.messages == ["GPU available: True (cuda), used: False", "`Trainer.fit` stopped: `max_epochs=2` reached."]
    with warnings.catch_warnings(record=True) as caught:
        rank_zero_warn("Checkpoint directory /x/checkpoints exists and is not empty.")
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`",
                      FutureWarning)
        rank_zero_warn("GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`.")
    assert [str(warning.message) for warning in caught] == [
        "GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`."]
