"""Really train a tiny HRNet on generated Cityscapes-layout data through the public entry points."""
import json
import signal

import pytest
import torch

from conftest import logged_losses
from segrun import build, runner, spec
from segrun.cli import main
from segrun.resolve import resolve


@pytest.fixture
def tiny(tiny_spec):
    return tiny_spec()


def tensorboard_tags(folder) -> dict[str, list[str]]:
    """The tags of each kind ("images", "scalars") in a run folder's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = {"images": [], "scalars": []}
    for events in (folder / "logs" / "tensorboard").rglob("events.out.tfevents.*"):
        found = EventAccumulator(str(events), size_guidance={"images": 0}).Reload().Tags()
        for kind in tags:
            tags[kind] += found[kind]
    return tags


def test_training_writes_a_complete_run_folder_and_the_loss_falls(tiny, tmp_path, capsys):
    assert main([str(tiny), "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    loaded = build.load_spec(tiny)
    folder = tmp_path / "runs" / f"tiny-{spec.spec_hash(resolve(loaded))}"
    assert build.read_spec((folder / "spec.toml").read_text()) == resolve(loaded)  # "auto" resolved for this machine
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    assert list((folder / "checkpoints").glob("best-epoch=*.ckpt"))
    # TensorBoard holds, beside the scalars, the validation figures: image | labels | prediction for
    # eval.log_images (4) images spread over the val set, and the confusion matrix
    tags = tensorboard_tags(folder)
    assert {"val/examples/0", "val/examples/1", "val/examples/2", "val/examples/3", "val/confusion_matrix"} <= set(
        tags["images"])
    assert {"val/mIoU", "val/loss", "val/loss/out"} <= set(tags["scalars"])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {"mIoU", "pixel_accuracy", "per_class_iou", "epoch", "step"} <= set(metrics)
    assert 0.0 <= metrics["mIoU"] <= 1.0 and len(metrics["per_class_iou"]) == 19
    assert metrics["per_class_iou"]["road"] is not None and metrics["per_class_iou"]["train"] is None
    assert "mIoU" in capsys.readouterr().out

    losses = [loss for _, loss in logged_losses(runner.RunFolder(folder))]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3

    # The same spec again leaves the finished run alone; --force trains a new folder beside it.
    finished_at = (folder / "metrics.json").stat().st_mtime
    assert main([str(tiny), "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    assert "already holds this finished run" in capsys.readouterr().out
    assert (folder / "metrics.json").stat().st_mtime == finished_at
    assert main([str(tiny), "trainer.max_steps=2", "--runs", str(tmp_path / "runs"), "--no-progress", "--force"]) == 0
    forced = build.load_spec(tiny, ["trainer.max_steps=2"])
    assert (tmp_path / "runs" / f"tiny-{spec.spec_hash(resolve(forced))}" / "metrics.json").is_file()


def test_an_interrupted_run_resumes_where_it_stopped(tiny, tmp_path, monkeypatch, signal_during):
    loaded = build.load_spec(tiny)
    signal_during(signal.SIGINT, step=5)  # stops before step 6
    with pytest.raises(KeyboardInterrupt):
        runner.train(loaded, tmp_path / "runs", progress=False)
    monkeypatch.undo()
    folder = runner.run_folder_for(resolve(loaded), tmp_path / "runs", init=None)
    assert not folder.finished and (folder.checkpoints / "interrupted.ckpt").is_file()

    runner.train(loaded, tmp_path / "runs", progress=False)
    assert folder.finished
    resumed_steps = [step for step, _ in logged_losses(folder, version=1)]
    assert len(resumed_steps) == 12 - 6 and resumed_steps[0] >= 6  # the 6 steps left, not all 12 again


STUDY_LOSSES = {2: "[[loss]]\nname = \"ce\"\n[[loss]]\nname = \"ce\"\nweight = 0.4\n",
                4: "".join(f"[[loss]]\nname = \"ce\"\nweight = {w}\n" for w in (1.0, 0.4, 0.05, 0.05))}


@pytest.mark.parametrize("name", ["hrnet_ocr", "hrnet_ocr_aspp", "hrnet_ocr_ms"])
def test_each_model_trains_a_few_steps_and_evaluates(name, tmp_path, tiny_spec, capsys):
    from segrun.models import output_names
    from segrun.spec import ModelSpec

    outputs = len(output_names(ModelSpec(name=name, backbone="hrnet_w18_small")))
    path = tiny_spec(STUDY_LOSSES[outputs])
    # 4 steps: one epoch, so a validation runs while fitting and logs its figures
    overrides = [f"model.name={name}", "trainer.max_steps=4", "eval.scales=[0.5, 1.0]"]
    assert main([str(path), *overrides, "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    folder = tmp_path / "runs" / f"tiny-{spec.spec_hash(resolve(build.load_spec(path, overrides)))}"
    assert (folder / "metrics.json").is_file()
    tags = tensorboard_tags(folder)
    assert {f"val/loss/{output}" for output in output_names(ModelSpec(name=name))} <= set(tags["scalars"])
    assert ("val/attention/0" in tags["images"]) == (name == "hrnet_ocr_ms")

    assert main(["eval", str(folder), "--scales", "1.0,0.75", "--flip", "--sliding", "48x64", "--no-progress"]) == 0
    result = json.loads((folder / "eval.json").read_text())
    options = result["options"]
    assert options["scales"] == [1.0, 0.75] and options["flip"] is True and options["sliding"] == [48, 64]
    assert {"mIoU", "pixel_accuracy", "per_class_iou"} <= set(result)
    assert "mIoU" in capsys.readouterr().out


def test_rmi_training_in_bf16_mixed_precision(tmp_path, tiny_spec):
    path = tiny_spec()
    overrides = ['loss=[{name = "rmi"}]', 'trainer.precision="bf16-mixed"', "trainer.max_steps=3"]
    assert main([str(path), *overrides, "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    folder = runner.RunFolder(tmp_path / "runs" / f"tiny-{spec.spec_hash(resolve(build.load_spec(path, overrides)))}")
    losses = [loss for _, loss in logged_losses(folder)]
    assert len(losses) == 3 and all(loss == loss and abs(loss) < 1e6 for loss in losses)


def test_last_checkpoint_follows_training_when_the_best_stays_early(tiny, tmp_path, monkeypatch):
    from segrun.metrics import MeanIoU

    real_compute = MeanIoU.compute
    calls = []

    def worse_every_time(self):
        calls.append(1)
        return {**real_compute(self), "mIoU": torch.tensor(1.0 / len(calls), dtype=torch.float64)}

    monkeypatch.setattr(MeanIoU, "compute", worse_every_time)
    folder = runner.train(build.load_spec(tiny), tmp_path / "runs", progress=False)
    assert [p.name for p in sorted(folder.checkpoints.glob("*.ckpt"))] == ["best-epoch=000.ckpt", "last.ckpt"]
    last = torch.load(folder.checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 12)


def test_the_same_spec_trains_the_same_way_whatever_the_number_of_workers(tmp_path, tiny_spec):
    """Augmentations draw from albumentations' own generator: segrun seeds it for each training
    sample, so a run repeats exactly whatever the number of loader workers (none: loading in the
    main process; two: samples split between worker processes)."""
    path = tiny_spec(epochs=2)
    curves = []
    for workers in (0, 2):
        runs = tmp_path / f"runs{workers}"
        assert main([str(path), f"data.num_workers={workers}", "--runs", str(runs), "--no-progress"]) == 0
        (folder,) = runs.iterdir()
        curves.append([loss for _, loss in logged_losses(runner.RunFolder(folder))])
    assert len(curves[0]) >= 6 and curves[0] == curves[1]


def test_a_run_reports_its_test_protocol_with_summed_logits_and_nested_ms_ocr_scales(tmp_path, tiny_spec, capsys):
    test_protocol = ("[eval]\nmodel_scales = [0.5, 1.0]\n"
                     "[test]\nscales = [0.75, 1.0]\nflip = true\ncombine = \"sum_logits\"\nmodel_scales = [0.5, 1.0, 2.0]\n"
                     "[[test.pipeline]]\nname = \"Normalize\"\n")
    path = tiny_spec(STUDY_LOSSES[4] + test_protocol)
    overrides = ["model.name=hrnet_ocr_ms", "trainer.max_steps=2"]
    assert main([str(path), *overrides, "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    folder = tmp_path / "runs" / f"tiny-{spec.spec_hash(resolve(build.load_spec(path, overrides)))}"
    metrics = json.loads((folder / "metrics.json").read_text())
    test = metrics["test"]
    assert test["options"]["combine"] == "sum_logits" and test["options"]["model_scales"] == [0.5, 1.0, 2.0]
    assert test["options"]["scales"] == [0.75, 1.0] and test["options"]["flip"] is True
    assert 0 <= test["mIoU"] <= 1 and len(test["per_class_iou"]) == 19
    assert "test protocol (scales 0.75, 1.0, attention over 0.5, 1.0, 2.0 inside each, flip, summed logits)" in (
        capsys.readouterr().out)

    # segrun eval runs the test protocol again, the same numbers from the same checkpoint
    assert main(["eval", str(folder), "--no-progress"]) == 0
    again = json.loads((folder / "eval.json").read_text())
    assert again["protocol"] == "test" and again["options"] == test["options"]
    assert again["confusion_matrix"] == test["confusion_matrix"]

    # the study's other MS OCR row from the same run: attention over [0.5, 1.0] only
    assert main(["eval", str(folder), "--model-scales", "0.5,1.0", "--out", str(folder / "eval-ms05.json"),
                 "--no-progress"]) == 0
    assert json.loads((folder / "eval-ms05.json").read_text())["options"]["model_scales"] == [0.5, 1.0]
