"""Sweeps, reports, prediction export, multi-process training, lineage and the NaN stop."""
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segrun import build, lineage, runner, spec
from segrun.atomic_write import DiskFull
from segrun.cli import main
from segrun.errors import UserError
from segrun.losses.cross_entropy import CrossEntropy
from segrun.resolve import resolve
from segrun.sweep import split_values, sweep_members

REPO = Path(__file__).resolve().parents[1]




@pytest.fixture
def tiny(tiny_spec):
    return tiny_spec(batch_size=2, train_images=4, val_images=3, width=96, lr=0.002, epochs=1)


def test_split_values_keeps_arrays_and_strings_whole():
    assert split_values("1,2") == ["1", "2"]
    assert split_values("[1, 2],[3, 4]") == ["[1, 2]", "[3, 4]"]
    assert split_values("'a,b',\"c\"") == ["'a,b'", '"c"']
    assert sweep_members(["x=1"], ["a=1,2", "b=3"], 2) == [
        ["x=1", "a=1", "b=3", "seed=0"], ["x=1", "a=1", "b=3", "seed=1"],
        ["x=1", "a=2", "b=3", "seed=0"], ["x=1", "a=2", "b=3", "seed=1"]]
    with pytest.raises(UserError, match="expected KEY=V1,V2"):
        sweep_members([], ["epochs"], None)


def test_a_sweep_member_that_does_not_load_is_named(tiny, tmp_path, capsys):
    assert main([str(tiny), "--sweep", "model.name=hrnet,hrnet_ocr", "--runs", str(tmp_path / "runs"), "--print"]) == 2
    assert "sweep member 2 of 2 (model.name=hrnet_ocr): " in capsys.readouterr().err


def test_sweep_of_two_by_two_with_two_seeds_then_report(tiny, tmp_path, capsys):
    runs = tmp_path / "runs"
    sweep = ["--sweep", "optimizer.lr=0.002,0.001", "--sweep", "trainer.log_every_n_steps=1,2", "--seeds", "2"]
    assert main([str(tiny), *sweep, "--runs", str(runs), "--print"]) == 0
    commands = capsys.readouterr().out.splitlines()
    assert len(commands) == 8 and commands[0].startswith("segrun ") and "seed=1" in commands[1]

    assert main([str(tiny), *sweep, "--runs", str(runs), "--no-progress"]) == 0
    assert len(list(runs.glob("tiny-*/metrics.json"))) == 8
    capsys.readouterr()
    assert main([str(tiny), *sweep, "--runs", str(runs), "--no-progress"]) == 0  # all members finished: skipped
    assert capsys.readouterr().out.count("already holds this finished run") == 8

    assert main(["report", str(runs / "tiny-*"), "--csv", str(tmp_path / "report.csv"), "--plot", str(tmp_path / "report.png")]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("tiny ")]
    assert len(rows) == 4 and all(" 2 " in row and "±" in row for row in rows)
    with open(tmp_path / "report.csv") as file:
        records = list(csv.DictReader(file))
    assert len(records) == 8 and {r["seed"] for r in records} == {"0", "1"} and "road" in records[0]
    settings = {}
    for record in records:
        settings.setdefault(record["setting"], []).append(float(record["mIoU"]))
    assert len(settings) == 4 and all(len(v) == 2 for v in settings.values())
    mean = np.mean(next(iter(settings.values())))
    assert any(f"{mean:.4f}" in row for row in rows)
    assert cv2.imread(str(tmp_path / "report.png")) is not None
    from segrun.report import group_rows, load_results, setting_labels
    labels = setting_labels(group_rows(load_results([runs / "tiny-*"])))
    assert sorted(labels) == sorted(f"tiny optimizer.lr={lr} trainer.log_every_n_steps={n}"
                                    for lr in (0.002, 0.001) for n in (1, 2))  # settings of one name told apart


def test_predict_in_every_format_skipping_unreadable_files(tiny, tmp_path, capsys):
    assert main([str(tiny), "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    (run,) = (tmp_path / "runs").glob("tiny-*")
    images = tmp_path / "images"
    images.mkdir()
    for source in sorted((tmp_path / "data" / "leftImg8bit" / "val").rglob("*.png"))[:2]:
        (images / source.name).write_bytes(source.read_bytes())
    (images / "broken_leftImg8bit.png").write_bytes(b"not an image")
    for output_format in ("color", "trainid", "cityscapes"):
        out = tmp_path / output_format
        capsys.readouterr()
        assert main(["predict", str(run), str(images), "--out", str(out), "--format", output_format]) == 2
        captured = capsys.readouterr()
        assert "broken_leftImg8bit.png: not a readable image, skipped" in captured.out
        assert f"wrote 2 {output_format} predictions; skipped 1 unreadable" in captured.out
        assert captured.err == (f"segrun: error: {images / 'broken_leftImg8bit.png'}: not readable as images, not "
                                f"predicted; replace or remove them (the other 2 predictions are in {out})\n")
        written = sorted(p.name for p in out.iterdir() if p.name != "legend.png")
        assert written == sorted(p.name for p in images.iterdir() if p.name != "broken_leftImg8bit.png")
        assert (out / "legend.png").is_file() == (output_format == "color")
        prediction = cv2.imread(str(out / written[0]), cv2.IMREAD_UNCHANGED)
        if output_format == "color":
            assert prediction.shape == (64, 96, 3)
            assert f"their colours' classes in {out / 'legend.png'}" in captured.out
            key = cv2.imread(str(out / "legend.png"))
            assert key.shape[0] == 19 * 16 and tuple(key[2 + 6, 4 + 6][::-1]) == (128, 64, 128)  # road's swatch
        elif output_format == "trainid":
            assert prediction.shape == (64, 96) and prediction.max() < 19
        else:
            assert set(np.unique(prediction)) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}


def test_metrics_json_records_lineage(tiny, tmp_path):
    started = time.monotonic()
    folder = runner.train(build.load_spec(tiny), tmp_path / "runs", progress=False)
    wall = time.monotonic() - started
    metrics = json.loads(folder.metrics_file.read_text())
    assert 0 < metrics["train_seconds"] <= wall
    assert metrics["spec_hash"] == spec.spec_hash(resolve(build.load_spec(tiny))) and metrics["init"] is None
    assert metrics["packages"]["torch"] and metrics["packages"]["segrun"]
    assert metrics["devices"] and metrics["train_seconds"] > 0 and metrics["validation_seconds_per_image"] > 0
    assert "segrun_commit" in metrics and "peak_gpu_memory_gb" in metrics
    assert len(metrics["confusion_matrix"]) == 19


def test_the_commit_names_uncommitted_changes_and_falls_back_to_the_environment(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    monkeypatch.setenv("SEGRUN_COMMIT", "abc123")
    assert lineage.segrun_commit(tmp_path) == "abc123"  # not a git checkout
    git("init", "-q")
    (tmp_path / "model.py").write_text("a = 1\n")
    git("add", "model.py")
    git("commit", "-q", "-m", "first")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert lineage.segrun_commit(tmp_path) == head
    (tmp_path / "notes.txt").write_text("untracked files do not count\n")
    assert lineage.segrun_commit(tmp_path) == head
    (tmp_path / "model.py").write_text("a = 2\n")
    assert lineage.segrun_commit(tmp_path) == f"{head}-dirty"


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    real_compute = CrossEntropy.compute
    calls = []

    def nan_on_third_step(self, logits, target):
        calls.extend([1] if torch.is_grad_enabled() else [])  # training steps only, not validation's losses
        loss = real_compute(self, logits, target)
        return loss * float("nan") if torch.is_grad_enabled() and len(calls) == 3 else loss

    monkeypatch.setattr(CrossEntropy, "compute", nan_on_third_step)
    # Two steps an epoch, logged every 50: the bad step (step 2, the first of epoch 1) is held on the
    # device and the stop comes at the end of epoch 1, before its checkpoints are written.
    loaded = build.load_spec(tiny, ["trainer.epochs=3", "trainer.log_every_n_steps=50"])
    with pytest.raises(UserError, match=r"the training loss became nan at step 2 \(epoch 1\); the last good checkpoint is checkpoints/last\.ckpt"):
        runner.train(loaded, tmp_path / "runs", progress=False)
    assert len(calls) == 4  # the step after the bad one ran: the stop was deferred to the epoch's end
    folder = runner.run_folder_for(resolve(loaded), tmp_path / "runs", init=None)
    assert sorted(p.name for p in folder.checkpoints.iterdir()) == ["best-epoch=000.ckpt", "last.ckpt"]
    state = torch.load(folder.checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 2 and all(torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point())
    assert not folder.finished


def test_a_checkpoint_write_on_a_full_disk_leaves_the_previous_checkpoint_whole(tiny, small_disk):
    loaded = resolve(build.load_spec(tiny))
    folder = runner.run_folder_for(loaded, small_disk / "runs", init=None)
    checkpoint_io = build.trainer(loaded, folder, progress=False).strategy.checkpoint_io
    assert isinstance(checkpoint_io, build.AtomicCheckpointIO)
    path = folder.checkpoints / "last.ckpt"
    checkpoint_io.save_checkpoint({"global_step": 1, "weights": torch.ones(1000)}, path)
    before = path.read_bytes()
    small_disk.fill(room=1000)
    with pytest.raises(DiskFull, match=r"last\.ckpt: no space left on the disk to write it \(0\.\d MB needed"):
        checkpoint_io.save_checkpoint({"global_step": 2, "weights": torch.zeros(100_000)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in folder.checkpoints.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_a_spec_write_on_a_full_disk_leaves_no_spec_and_the_next_run_writes_it(tiny, small_disk):
    loaded = resolve(spec.load(tiny))
    (small_disk / "runs").mkdir()
    small_disk.fill(room=0)
    with pytest.raises(UserError, match=r"no space left on the disk to write it"):
        runner.run_folder_for(loaded, small_disk / "runs", init=None)
    (small_disk / ".filler").unlink()
    folders = list((small_disk / "runs").iterdir())
    assert all(not (folder / "spec.toml").exists() for folder in folders) and small_disk.partial_files() == []
    assert runner.run_folder_for(loaded, small_disk / "runs", init=None).spec_file.read_text() == spec.dumps(loaded)


def test_training_on_a_disk_that_fills_up_stops_with_one_line_and_leaves_no_temporary_file(tiny, small_disk,
                                                                                          monkeypatch, capsys):
    """The disk fills (another process, say) just before the end of epoch 1's checkpoints."""
    real_save = build.AtomicCheckpointIO.save_checkpoint

    def fill_before_epoch_1(io, state, path, storage_options=None):
        if state["epoch"] == 1:
            small_disk.fill(room=0)
        return real_save(io, state, path, storage_options)

    monkeypatch.setattr(build.AtomicCheckpointIO, "save_checkpoint", fill_before_epoch_1)
    assert main([str(tiny), "trainer.epochs=2", "--runs", str(small_disk / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no space left on the disk to write it" in err and "Traceback" not in err
    assert small_disk.partial_files() == []


def test_two_process_ddp_counts_every_validation_image_once(tiny, tmp_path):
    runs = tmp_path / "runs"
    overrides = ['trainer.accelerator="cpu"', "trainer.devices=2", 'trainer.strategy="ddp"']
    result = subprocess.run([sys.executable, "-m", "segrun", str(tiny), *overrides, "--runs", str(runs), "--no-progress"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = runs.glob("tiny-*")
    distributed = json.loads((run / "metrics.json").read_text())["confusion_matrix"]
    assert main(["eval", str(run), "--out", str(tmp_path / "single.json"), "--no-progress"]) == 0
    single = json.loads((tmp_path / "single.json").read_text())["confusion_matrix"]
    assert distributed == single
    assert sum(map(sum, single)) == 3 * 64 * 96 - sum(  # 3 val images, every non-ignored pixel counted once
        int((cv2.imread(str(p), cv2.IMREAD_UNCHANGED) == 255).sum())
        for p in (tmp_path / "data" / "gtFine" / "val").rglob("*_labelTrainIds.png"))


def test_a_non_finite_loss_is_held_on_the_device_and_its_gradients_zeroed(monkeypatch):
    """No host synchronisation per step: the bad step is recorded in a tensor, its gradients are
    zeroed before the optimizer runs, and the stop comes at the next check."""
    from segrun.task import NonFiniteLoss, SegmentationTask

    model = torch.nn.Conv2d(3, 2, 1)
    task = SegmentationTask(_ListOutput(model), losses=[torch.nn.Identity()], loss_weights=[1.0], output_names=["out"],
                            num_classes=2, class_names=["a", "b"], ignore_index=255,
                            configure_optimization=lambda params, steps: {}, predict=None)
    loss = (model.weight.sum() + model.bias.sum()) * float("nan")
    monkeypatch.setattr(type(task), "global_step", property(lambda self: 7))
    monkeypatch.setattr(type(task), "current_epoch", property(lambda self: 1))
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: pytest.fail("a host synchronisation in the step"))
    task._watch_finite(loss.detach())
    loss.backward()
    task.on_before_optimizer_step(None)
    monkeypatch.undo()
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())
    with pytest.raises(NonFiniteLoss, match=r"the training loss became nan at step 7 \(epoch 1\)"):
        task._stop_if_a_loss_was_not_finite()


class _ListOutput(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, images):
        return [self.module(images)]


def test_predict_never_writes_among_its_inputs_nor_one_prediction_over_another(tiny, tmp_path, capsys):
    assert main([str(tiny), "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    (run,) = (tmp_path / "runs").glob("tiny-*")
    images = tmp_path / "images"
    images.mkdir()
    source = sorted((tmp_path / "data" / "leftImg8bit" / "val").rglob("*.png"))[0]
    (images / "b.png").write_bytes(source.read_bytes())
    cv2.imwrite(str(images / "b.jpg"), cv2.imread(str(source)))
    before = {path.name: path.read_bytes() for path in images.iterdir()}
    capsys.readouterr()
    for out in (images, images / "predictions"):
        assert main(["predict", str(run), str(images), "--out", str(out), "--format", "trainid"]) == 2
        assert capsys.readouterr().err == (f"segrun: error: --out {out}: inside the inputs' folder {images}, where "
                                           "predictions would be written among them and could replace them; choose "
                                           "a folder outside it\n")
    assert {path.name: path.read_bytes() for path in images.iterdir()} == before

    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "out"), "--format", "trainid"]) == 0
    assert "wrote 2 trainid predictions" in capsys.readouterr().out
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["b.jpg.png", "b.png.png"]

    other = tmp_path / "other"
    other.mkdir()
    (other / "b.png").write_bytes(source.read_bytes())
    assert main(["predict", str(run), str(images / "b.png"), str(other / "b.png"), "--out", str(tmp_path / "out2"),
                 "--format", "trainid"]) == 2
    assert capsys.readouterr().err == (f"segrun: error: {images / 'b.png'} and {other / 'b.png'}: would both be "
                                       "predicted as b.png in --out; predict them into separate folders, or give "
                                       "their common folder as the input (which keeps its layout)\n")
