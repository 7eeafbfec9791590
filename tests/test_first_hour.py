"""A newcomer's first hour on a small machine: a study spec or chain tried with --smoke, a GPU spec on
a machine without GPUs said in one line before anything is made, warnings that say something
(a crop larger than every image) and none that say nothing, and a run shorter than an epoch
validated at its end."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segrun.cli import main
from segrun.smoke import SCALE, smoke_overrides, smoke_spec

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "specs" / "study"
no_gpu = pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has the study's GPUs")


def test_smoke_is_the_spec_at_an_eighth_of_its_sizes_on_this_machine():
    from segrun import build

    real = build.load_spec(STUDY / "pascal_context59_ocr.toml")
    smoke = smoke_spec(STUDY / "pascal_context59_ocr.toml")
    assert (smoke.model.name, smoke.model.backbone, smoke.model.pretrained) == ("hrnet_ocr", "hrnet_w18_small", False)
    assert (smoke.trainer.devices, smoke.trainer.accelerator, smoke.trainer.max_steps) == (1, "auto", 4)
    assert smoke.loss == real.loss and smoke.optimizer == real.optimizer and smoke.test == real.test
    assert smoke.data.synthetic is not None and smoke.data.root == "smoke/pascal_context59"
    for real_step, smoke_step in zip(real.data.train_pipeline + real.data.val_pipeline,
                                     smoke.data.train_pipeline + smoke.data.val_pipeline):
        assert real_step.name == smoke_step.name
        for key in ("height", "width", "min_height", "min_width", "max_size"):
            if key in real_step.params:
                assert smoke_step.params[key] == real_step.params[key] // SCALE  # 520 -> 65
    assert "model.pretrained_skip=[]" in smoke_overrides(build.load_spec(STUDY / "cityscapes_ms_ocr_mapillary.toml",
                                                                          pipelines=False))


def test_a_study_spec_trains_with_smoke_into_its_own_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGRUN_DATA", str(tmp_path / "data"))
    assert main([str(STUDY / "cityscapes_ms_ocr_rmi.toml"), "--smoke", "--runs", str(tmp_path / "runs"),
                 "--no-progress"]) == 0
    (run,) = (tmp_path / "runs" / "smoke").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["trained_steps"] == 4 and metrics["test"]["options"]["model_scales"] == [0.5, 1.0, 2.0]
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((REPO / "specs" / "beyond").glob("*.toml")), ids=lambda path: path.stem)
def test_every_spec_beyond_the_study_checks_out_for_smoke_with_its_models_smallest_backbone(path, tmp_path,
                                                                                            monkeypatch, capsys):
    from segrun import build, models

    monkeypatch.setenv("SEGRUN_DATA", str(tmp_path / "data"))
    real = build.load_spec(path)
    smoke = smoke_spec(path)
    assert (smoke.model.name, smoke.model.backbone) == (real.model.name, models.smallest_backbone(real.model.name))
    assert smoke.data.dataset == real.data.dataset and smoke.data.synthetic is not None
    assert main(["validate", str(path), "--smoke"]) == 0
    assert "the run will synthesise it" in capsys.readouterr().out


def test_an_ade20k_spec_trains_with_smoke_on_synthetic_ade20k(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGRUN_DATA", str(tmp_path / "data"))
    assert main([str(REPO / "specs" / "beyond" / "ade20k_upernet_convnext_t.toml"), "--smoke", "--runs",
                 str(tmp_path / "runs"), "--no-progress"]) == 0
    (run,) = (tmp_path / "runs" / "smoke").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["trained_steps"] == 4 and len(metrics["per_class_iou"]) == 150
    ade20k = tmp_path / "data" / "smoke" / "ade20k"
    assert (ade20k / "images" / "training").is_dir()
    assert "Traceback" not in capsys.readouterr().err

    # the data commands and colour predictions on ADE20K's 150 classes
    spec = tmp_path / "ade20k.toml"
    spec.write_text(f'name = "ade"\n[data]\ndataset = "ade20k"\nroot = "{ade20k}"\n')
    assert main(["data", "stats", str(spec)]) == 0
    assert "train: 8 images" in capsys.readouterr().out
    assert main(["data", "weights", str(spec)]) == 0
    assert capsys.readouterr().out.count(",") >= 149  # one weight per class
    assert main(["data", "show", str(spec), "--n", "2", "--out", str(tmp_path / "show.png")]) == 0
    assert main(["predict", str(run), str(ade20k / "images" / "validation"), "--out", str(tmp_path / "predicted"),
                 "--no-progress"]) == 0
    assert sorted(path.name for path in (tmp_path / "predicted").iterdir()) == [
        "ADE_val_00000001.png", "ADE_val_00000002.png", "legend.png"]  # lossless, whatever the input


@no_gpu
def test_validate_says_a_chain_checks_out_for_smoke_stage_by_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGRUN_DATA", str(tmp_path / "data"))
    chain = STUDY / "cityscapes_hrnet_coarse_chain.toml"
    assert main(["validate", str(chain), "--smoke"]) == 0
    out = capsys.readouterr().out
    assert [f"{chain} stage {i} " in out for i in range(3)] == [True] * 3
    assert main(["validate", str(chain)]) == 2
    assert capsys.readouterr().err.startswith(f'segrun: error: {chain} stage 0 (fine): trainer.accelerator = "gpu"')


@no_gpu
def test_a_gpu_spec_on_a_machine_without_them_is_one_line_and_leaves_no_run_folder(tmp_path, capsys):
    spec = STUDY / "cityscapes_hrnet.toml"
    assert main([str(spec), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith('segrun: error: spec cityscapes_hrnet: trainer.accelerator = "gpu" '
                                                   "with 2 device(s), but this machine has")
    assert "--smoke" in err and not (tmp_path / "runs").exists()
    assert main(["validate", str(spec)]) == 2
    assert f'{spec}: trainer.accelerator = "gpu" with 2 device(s)' in capsys.readouterr().err


def test_a_run_that_never_starts_leaves_no_run_folder(tiny_spec, tmp_path, capsys):
    spec = tiny_spec()
    text = spec.read_text()
    spec.write_text(text[:text.index("[data.synthetic]")] + text[text.index("[[data.train_pipeline]]"):])  # real data
    assert main([str(spec), f"data.root={tmp_path / 'nothing-here'}", "--runs", str(tmp_path / "runs")]) == 2
    assert "nothing-here" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_a_crop_larger_than_every_image_is_said(tiny_spec, tmp_path, capsys):
    spec = tiny_spec(epochs=1, train_images=4, val_images=1)
    crop = ['data.train_pipeline=[{name = "RandomScale", scale_limit = [-0.5, 1.0], p = 1.0}, '
            '{name = "RandomCrop", height = 512, width = 1024, pad_if_needed = true, fill_mask = 255}, '
            '{name = "Normalize"}]', "trainer.max_steps=1"]
    assert main([str(spec), *crop, "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("segrun: warning:")]
    assert warning == ["segrun: warning: data.train_pipeline step 1 (RandomCrop 512x1024) is larger than every training "
                       "image can be there (at most 128x256): every crop is mostly padding, and training spends its "
                       "time on it; lower the crop, or use images of the size the spec is for"]


def test_a_run_shorter_than_an_epoch_validates_its_final_weights(tiny_spec, tmp_path, capsys):
    spec = tiny_spec(epochs=3)  # 4 steps an epoch
    assert main([str(spec), "trainer.max_steps=2", "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["checkpoint"], metrics["step"], metrics["trained_steps"]) == ("checkpoints/last.ckpt", 2, 2)
    assert 0 <= metrics["mIoU"] <= 1
    captured = capsys.readouterr()
    assert "no validation ran while training (2 steps); the final weights are validated" in captured.out
    assert "val/mIoU" not in captured.err  # Lightning's "could not find the monitored key" is not said
    assert main(["report", str(run)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny "))
    assert row.split()[4] == "2"  # steps trained, not the spec's epochs


def test_stderr_holds_progress_and_nothing_that_says_nothing(tiny_spec, tmp_path, signal_during, monkeypatch):
    """A run resumed in a process whose stderr is a file: no srun hint (srun may be on the PATH), no
    'No CUDA runtime', no logging-interval warning, the checkpoint it resumes from said once (by
    segrun), the data already there not announced, and no carriage returns."""
    spec = tiny_spec(epochs=2, train_images=8, val_images=2)  # 2 steps an epoch, fewer than log_every_n_steps
    signal_during(signal.SIGINT, step=2)
    assert main([str(spec), "--runs", str(tmp_path / "runs"), "--no-progress"]) == 130
    monkeypatch.undo()
    resumed = subprocess.run([sys.executable, "-m", "segrun", str(spec), "--runs", str(tmp_path / "runs")],
                             cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for said in ("srun", "No CUDA runtime", "logging interval", "Restored all states", "Restoring states", "\r",
                 "synthesising", "preparing"):
        assert said not in resumed.stderr, (said, resumed.stderr)
    assert "Epoch 1" in resumed.stderr  # progress is still there, a line per tenth
    assert resumed.stdout.count("from interrupted.ckpt") == 1


def test_a_torchvision_that_does_not_match_torch_is_one_line(tmp_path):
    """As pip leaves it when torchvision was built for another torch: importing it fails in torch's
    operator registry. A package folder and its metadata ahead on the path play that install."""
    (tmp_path / "torchvision").mkdir()
    (tmp_path / "torchvision" / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    (tmp_path / "torchvision-0.24.1.dist-info").mkdir()
    (tmp_path / "torchvision-0.24.1.dist-info" / "METADATA").write_text("Name: torchvision\nVersion: 0.24.1\n")
    result = subprocess.run([sys.executable, "-m", "segrun", "show", str(REPO / "specs" / "quickstart.toml")],
                            cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    torch_minor = int(torch.__version__.split(".")[1])
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("segrun: error: importing torchvision failed (operator torchvision::nms does not "
                                    f"exist); installed: torch {torch.__version__.split('+')[0]}")
    assert f"pip install 'torchvision==0.{torch_minor + 15}.*'; then run segrun doctor" in result.stderr
