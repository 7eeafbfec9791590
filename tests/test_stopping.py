"""Training stopped by a signal at any moment (Ctrl-C, a scheduler's SIGTERM, a requeue signal, in a
step, in validation, while a checkpoint is written) stops at a step boundary, and the resumed run
ends bit-identical to a run never stopped: weights, BatchNorm counters, optimizer and schedule
state, the chosen checkpoint and its scores."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import assert_same_end, write_tiny_spec

from segrun.cli import main
from segrun.run_folder import RunFolder
from segrun.task import SegmentationTask

REPO = Path(__file__).resolve().parents[1]
OCR_LOSSES = '[[loss]]\nname = "ce"\n[[loss]]\nname = "ce"\nweight = 0.4\n'
# Two epochs of four steps on 16 images of 64x96; OCR has dropout, whose draws must repeat too.
SPECS = {"hrnet": {}, "hrnet_ocr": {"extra": OCR_LOSSES, "model": "hrnet_ocr"}}


def tiny(folder: Path, model: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_tiny_spec(folder, **SPECS[model], width=96, epochs=2)


def train(spec: Path, runs: Path, *overrides: str) -> int:
    return main([str(spec), *overrides, "--runs", str(runs), "--no-progress"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, RunFolder]:
    """Per model, the run folder of a run never stopped (and its spec's folder, for the data)."""
    runs = {}
    for model in SPECS:
        folder = tmp_path_factory.mktemp(model)
        assert train(tiny(folder, model), folder / "runs") == 0
        (run,) = (folder / "runs").iterdir()
        runs[model] = RunFolder(run)
    return runs


STOPS = {  # where the signal arrives -> (model, signal, signal_during's arguments, (step, epoch) interrupted.ckpt holds)
    "Ctrl-C in a step of epoch 0": ("hrnet", signal.SIGINT, {"step": 2}, (3, 0)),
    "SIGTERM in a step of epoch 1, with dropout": ("hrnet_ocr", signal.SIGTERM, {"step": 5}, (6, 1)),
    "SIGUSR1 during validation": ("hrnet_ocr", signal.SIGUSR1, {"validation_after_epoch": 0}, (4, 0)),
    "SIGTERM while last.ckpt is written": ("hrnet", signal.SIGTERM, {"checkpoint": "last.ckpt"}, (4, 1)),
    "SIGTERM in the last step (stops in the last validation)": ("hrnet", signal.SIGTERM, {"step": 7}, (8, 1)),
}


@pytest.mark.parametrize("where", STOPS)
def test_a_signal_stops_at_a_step_boundary_and_the_resumed_run_ends_bit_identical(where, uninterrupted, tmp_path,
                                                                                   signal_during, monkeypatch, capsys):
    model, signum, during, (step, epoch) = STOPS[where]
    spec = tiny(tmp_path, model)
    sent = signal_during(signum, **during)
    status = train(spec, tmp_path / "runs")
    assert sent == [signum]
    assert status == (130 if signum == signal.SIGINT else 128 + signum)
    (run,) = (tmp_path / "runs").iterdir()
    folder = RunFolder(run)
    err = capsys.readouterr().err.strip().splitlines()
    prefix = "segrun: interrupted: " if signum == signal.SIGINT else "segrun: "
    assert err[-1] == (f"{prefix}{folder.path}: stopped at step {step} (epoch {epoch}) on "
                       f"{signal.Signals(signum).name}; checkpoints/interrupted.ckpt holds it; run the same command "
                       "to resume")
    assert torch.load(folder.checkpoints / "interrupted.ckpt", weights_only=True)["global_step"] == step
    assert not folder.finished
    monkeypatch.undo()

    assert train(spec, tmp_path / "runs") == 0
    assert_same_end(uninterrupted[model], folder)


@pytest.mark.parametrize("during", [{"step": 5}, {"validation_after_epoch": 0}], ids=["in a step", "in validation"])
def test_a_second_ctrl_c_stops_at_once_and_the_run_resumes_from_its_last_checkpoint(during, uninterrupted, tmp_path,
                                                                                    signal_during, monkeypatch, capsys):
    spec = tiny(tmp_path, "hrnet")
    signal_during(signal.SIGINT, times=2, **during)
    assert train(spec, tmp_path / "runs") == 130
    (run,) = (tmp_path / "runs").iterdir()
    folder = RunFolder(run)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"segrun: interrupted: {folder.path}: stopped; run the same command to resume from its last checkpoint")
    assert not (folder.checkpoints / "interrupted.ckpt").exists()  # the step was half done
    monkeypatch.undo()
    assert train(spec, tmp_path / "runs") == 0
    assert_same_end(uninterrupted["hrnet"], folder)


def test_a_signal_in_the_evaluation_after_training_says_so_and_the_rerun_finishes_it(uninterrupted, tmp_path,
                                                                                      signal_during, monkeypatch,
                                                                                      capsys):
    spec = tiny(tmp_path, "hrnet")
    signal_during(signal.SIGTERM, final_validation=True)
    assert train(spec, tmp_path / "runs") == 128 + signal.SIGTERM
    (run,) = (tmp_path / "runs").iterdir()
    folder = RunFolder(run)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"segrun: {folder.path}: stopped on SIGTERM in the evaluation after training (training is complete); run the "
        "same command to resume")
    assert not folder.finished
    monkeypatch.undo()
    assert train(spec, tmp_path / "runs") == 0
    assert_same_end(uninterrupted["hrnet"], folder)


def test_an_error_in_the_middle_of_a_step_leaves_no_checkpoint_of_it(uninterrupted, tmp_path, monkeypatch):
    spec = tiny(tmp_path, "hrnet")

    def fail_at_step_6(task, batch, index, real=SegmentationTask.training_step):
        loss = real(task, batch, index)  # the forward has run: BatchNorm's statistics have moved
        if task.global_step == 6:
            raise RuntimeError("out of memory, say")
        return loss

    monkeypatch.setattr(SegmentationTask, "training_step", fail_at_step_6)
    with pytest.raises(RuntimeError, match="out of memory, say"):
        train(spec, tmp_path / "runs")
    (run,) = (tmp_path / "runs").iterdir()
    folder = RunFolder(run)
    assert not (folder.checkpoints / "interrupted.ckpt").exists()
    monkeypatch.undo()
    assert train(spec, tmp_path / "runs") == 0  # from last.ckpt (epoch 0)
    assert_same_end(uninterrupted["hrnet"], folder)


def wait_for(path_glob, root: Path, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not list(root.glob(path_glob)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"no {path_glob} after {seconds} s"
        time.sleep(0.1)


def test_a_stopped_process_with_loader_workers_exits_quietly_with_one_line(tmp_path):
    """SIGTERM to the whole process group, as a scheduler sends it: the loader workers ignore it, the
    training process stops at a step boundary, shuts its workers down and exits, with no traceback."""
    spec = tiny(tmp_path, "hrnet")
    spec.write_text(spec.read_text().replace("num_workers = 0", "num_workers = 2").replace("epochs = 2", "epochs = 6"))
    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "segrun", str(spec), "--runs", str(runs), "--no-progress"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for("*/checkpoints/last.ckpt", runs, process)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "killed by signal" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("segrun:")]
    assert " on SIGTERM; checkpoints/interrupted.ckpt holds it; run the same command to resume" in line


EXIT_WITH_LIVE_WORKERS = """
import sys
from segrun import build
from segrun.data.datamodule import ensure_dataset
spec = build.load_spec(sys.argv[1], ["data.num_workers=2"])
ensure_dataset(spec.data, progress=False)
datamodule = build.datamodule(spec)
datamodule.setup("validate")
loader = datamodule.val_dataloader()
next(iter(loader))  # its persistent workers live as long as the loader: until the interpreter exits
print("exiting", flush=True)
"""


def test_a_process_exits_although_its_loader_workers_ignore_sigterm(tmp_path):
    """Training stopped during validation leaves the train loader's persistent workers alive (Lightning
    shuts down only the loader of the loop it was in); multiprocessing's exit handler would stop them
    with SIGTERM, which they ignore, and wait forever: segrun shuts them down first."""
    spec = tiny(tmp_path, "hrnet")
    result = subprocess.run([sys.executable, "-c", EXIT_WITH_LIVE_WORKERS, str(spec)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "exiting\n", result.stderr[-2000:]


def test_ddp_ranks_agree_on_the_step_to_stop_at_and_resume_bit_identical(tmp_path):
    """Only rank 0 receives SIGTERM; both processes stop at the same boundary, and the resumed
    2-process run ends as the uninterrupted one."""
    spec = tiny(tmp_path, "hrnet")
    spec.write_text(spec.read_text().replace("batch_size = 4", "batch_size = 2").replace("epochs = 2", "epochs = 3"))
    ddp = ['trainer.accelerator="cpu"', "trainer.devices=2", 'trainer.strategy="ddp"']

    def command(runs: str) -> list[str]:
        return [sys.executable, "-m", "segrun", str(spec), *ddp, "--runs", str(tmp_path / runs), "--no-progress"]

    whole = subprocess.run(command("whole"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    process = subprocess.Popen(command("stopped"), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for("*/checkpoints/last.ckpt", tmp_path / "stopped", process)
    process.send_signal(signal.SIGTERM)  # rank 0 only: Lightning started rank 1 as its own child
    _, err = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.count("segrun: ") == 1 and "Traceback" not in err
    resumed = subprocess.run(command("stopped"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (expected,), (actual,) = (tmp_path / "whole").iterdir(), (tmp_path / "stopped").iterdir()
    assert_same_end(RunFolder(expected), RunFolder(actual))


@pytest.mark.parametrize("how", ["moved", "copied"])
def test_a_run_folder_moved_or_copied_elsewhere_resumes_there_to_the_same_end(how, uninterrupted, tmp_path,
                                                                              signal_during, monkeypatch):
    """Paths in a checkpoint are relative to its run folder: the best score and best file come along,
    and nothing is written to (or removed from) the folder the run came from."""
    import shutil

    spec = tiny(tmp_path, "hrnet")
    signal_during(signal.SIGTERM, step=5)  # epoch 1: epoch 0's best checkpoint is behind it
    assert train(spec, tmp_path / "runs") == 128 + signal.SIGTERM
    monkeypatch.undo()
    (run,) = (tmp_path / "runs").iterdir()
    elsewhere = tmp_path / "elsewhere" / "runs"
    elsewhere.parent.mkdir()
    (shutil.move if how == "moved" else shutil.copytree)(tmp_path / "runs", elsewhere)
    original = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} if how == "copied" else {}

    assert train(spec, elsewhere) == 0
    assert_same_end(uninterrupted["hrnet"], RunFolder(elsewhere / run.name))
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == original


def test_the_checkpoint_callback_restores_its_best_score_and_files_in_another_folder(tmp_path):
    from segrun.build import RunFolderCheckpoint

    first = RunFolderCheckpoint(dirpath=tmp_path / "a" / "checkpoints", monitor="val/mIoU", mode="max")
    there = Path(first.dirpath)
    first.best_model_path, first.best_model_score = str(there / "best-epoch=000.ckpt"), torch.tensor(0.5)
    first.best_k_models = {first.best_model_path: torch.tensor(0.5)}
    first.kth_best_model_path, first.last_model_path = first.best_model_path, str(there / "last.ckpt")
    saved = first.state_dict()
    assert saved["dirpath"] == "." and saved["best_model_path"] == "best-epoch=000.ckpt"

    elsewhere = RunFolderCheckpoint(dirpath=tmp_path / "b" / "checkpoints", monitor="val/mIoU", mode="max")
    here = Path(elsewhere.dirpath)
    lightnings_own = {**saved, "dirpath": str(there), "best_model_path": first.best_model_path,
                      "best_k_models": {first.best_model_path: torch.tensor(0.5)}}
    for state in (saved, lightnings_own):  # written by segrun, or by an earlier version with absolute paths
        elsewhere.load_state_dict(state)
        assert elsewhere.best_model_score == torch.tensor(0.5)
        assert elsewhere.best_model_path == str(here / "best-epoch=000.ckpt")
        assert list(elsewhere.best_k_models) == [str(here / "best-epoch=000.ckpt")]


def test_one_run_folder_has_one_writer_and_a_killed_one_never_blocks_the_next(tmp_path, signal_during, capsys):
    import socket

    spec = tiny(tmp_path, "hrnet")
    spec.write_text(spec.read_text().replace("epochs = 2", "epochs = 50"))
    runs = tmp_path / "runs"
    first = subprocess.Popen([sys.executable, "-m", "segrun", str(spec), "--runs", str(runs), "--no-progress"],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("*/checkpoints/last.ckpt", runs, first)  # training, and holding the folder
        assert train(spec, runs) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        (run,) = runs.iterdir()
        assert line.startswith(f"segrun: error: {run}: process {first.pid} on {socket.gethostname()}, since ")
        assert line.endswith("is training this run; wait for it to end, or stop it (it resumes with the same command)")
    finally:
        first.kill()
        first.wait()
    signal_during(signal.SIGINT, step="first")  # the next start trains (and is stopped after a step)
    assert train(spec, runs) == 130
    assert f"{run}: stopped at step " in capsys.readouterr().err
