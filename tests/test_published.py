"""Published checkpoints as users have them: NVIDIA's MS OCR snapshot evaluated with its spec computes
what NVIDIA's own evaluation computes (reference vectors made with NVIDIA's code, see
tests/reference/README.md), snapshots holding numpy scalars load, PyTorch 0.4-era files without
BatchNorm counters load with them filled, and what torch's safe loader refuses is said as it is."""
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import seeded_weights
from segrun import build
from segrun.cli import main
from segrun.errors import UserError
from segrun.models.weights import load_trained, read_checkpoint

REPO = Path(__file__).resolve().parents[1]
NVIDIA = REPO / "tests" / "reference" / "nvidia_ms_ocr"
SPEC = REPO / "specs" / "published" / "nvidia_cityscapes_ms_ocr.toml"
RELEASED = "cityscapes_ocrnet.HRNet_Mscale_outstanding-turtle.pth"


def nvidia_weights() -> dict[str, torch.Tensor]:
    """The weights NVIDIA's model had, made again from weights.json's rule."""
    described = json.loads((NVIDIA / "weights.json").read_text())["weights"]
    weights = seeded_weights(described["tensors"], described["seed"], described["conv_gain"])
    floats = [tensor for tensor in weights.values() if tensor.is_floating_point()]
    assert sum(float(t.double().sum()) for t in floats) == pytest.approx(described["checksum_sum_of_float_tensors"])
    return weights


@pytest.fixture(scope="module")
def nvidia_file(tmp_path_factory) -> Path:
    """NVIDIA's snapshot layout: the DataParallel prefix, and numpy's mean_iu beside the weights."""
    path = tmp_path_factory.mktemp("released") / RELEASED
    torch.save({"state_dict": {f"module.{key}": value for key, value in nvidia_weights().items()}, "epoch": 3,
                "mean_iu": np.float64(0.8692), "arch": "network.ocrnet.HRNet_Mscale"}, path)
    return path


def segrun_scores(path: Path, *overrides: str) -> tuple[torch.Tensor, str]:
    spec = build.load_spec(SPEC, ["model.backbone=hrnet_w18", *overrides], pipelines=False)
    model = build.model(spec).eval()
    said = load_trained(model, path)
    image = torch.from_numpy(np.load(NVIDIA / "image.npy"))[None]
    with torch.no_grad():
        return build.predictor(spec.test)(model, image)[0], said


def test_nvidias_released_ms_ocr_evaluates_with_its_spec_as_nvidia_evaluates_it(nvidia_file):
    scores, said = segrun_scores(nvidia_file)
    assert "missing: none; unexpected: none; shape differs: none" in said and "NVIDIA's layout" not in said
    assert torch.allclose(scores, torch.from_numpy(np.load(NVIDIA / "logits_fp16.npy")).float(), atol=5e-3)
    assert torch.equal(scores.argmax(0).byte(), torch.from_numpy(np.load(NVIDIA / "argmax.npy")))


def test_nvidias_file_with_aligned_corners_is_said_to_differ(nvidia_file):
    scores, said = segrun_scores(nvidia_file, "model.align_corners=true")
    assert "a file in NVIDIA's layout (module.backbone, module.ocr): NVIDIA trains and evaluates with " \
           "align_corners false" in said
    agreement = (scores.argmax(0).byte() == torch.from_numpy(np.load(NVIDIA / "argmax.npy"))).float().mean()
    assert agreement < 0.95  # what the setting costs


def test_segrun_eval_prints_the_published_number_beside_its_own(nvidia_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGRUN_DATA", str(tmp_path / "data"))
    synthetic = "data.synthetic={train_images = 1, val_images = 2, height = 64, width = 128}"
    assert main(["eval", str(nvidia_file), "--out", str(tmp_path / "eval.json"), "--no-progress", "--spec", str(SPEC),
                 "model.backbone=hrnet_w18", "data.root=cityscapes_tiny", synthetic]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"published for {RELEASED}: 86.92 (NVIDIA/semantic-segmentation @7726b14, README.md:65")
    assert "; this evaluation: " in line
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["published"]["mIoU"] == 86.92

    assert main(["report", "--published", str(REPO / "specs" / "published" / "checkpoints.toml"),
                 str(tmp_path / "eval.json")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(RELEASED))
    assert row.split()[1] == "86.92" and row.split()[2] == f"{100 * written['mIoU']:.2f}"


def test_a_pytorch_04_file_without_batchnorm_counters_loads_with_them_filled(tmp_path):
    from test_study_checkpoints import CLASSES, original_checkpoint, small

    original, segrun_names = original_checkpoint("hrnet")
    path = tmp_path / "hrnet_w48_cityscapes_cls19_1024x2048_trainset.pth"  # master's FullModel layout
    torch.save({f"model.{k}": v for k, v in original.items() if not k.endswith("num_batches_tracked")}, path)
    model = small("hrnet", classes=CLASSES)
    said = load_trained(model, path)
    counters = [k for k in segrun_names if k.endswith("num_batches_tracked")]
    assert f"BatchNorm's num_batches_tracked filled with 0 in {len(counters)} layers" in said
    # master's InPlaceABN scales by |weight| + 1e-5 (tests/test_upstream_hrnet_seg.py holds it to master's code)
    state = model.state_dict()
    gammas = {k for k in segrun_names if k.endswith(".weight") and k.removesuffix("weight") + "running_var" in segrun_names}
    assert f"BatchNorm weights of {len(gammas)} layers taken as |weight| + 1e-05" in said
    assert all(torch.equal(state[k], v.abs() + 1e-5 if k in gammas else v) for k, v in segrun_names.items()
               if not k.endswith("num_batches_tracked"))


def test_what_the_safe_loader_refuses_is_said_in_torchs_current_terms(tmp_path, recwarn):
    """Held to the installed torch's words, not to a string copied from an older one."""
    class CallsTheShell:
        def __reduce__(self):
            return os.system, ("echo this never runs",)

    torch.save({"state_dict": {"w": torch.ones(1)}, "hyper": CallsTheShell()}, tmp_path / "code.ckpt")
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps({"w": [1.0]}, protocol=4))
    torch.save({"state_dict": {"w": torch.ones(1)}, "best_mIoU": np.float64(0.816), "epoch": np.int64(3)},
               tmp_path / "checkpoint.pth.tar")
    with pytest.raises(UserError, match=r"code\.ckpt: holds pickled code \(a call to \w+\.system\), which segrun "
                                        r"never runs: not loaded"):
        read_checkpoint(tmp_path / "code.ckpt")
    with pytest.raises(UserError, match=r"raw\.pkl: a pickle that is not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "raw.pkl")
    assert [str(w.message) for w in recwarn] == []  # torch's note on the pickle protocol is not passed on
    assert read_checkpoint(tmp_path / "checkpoint.pth.tar")["best_mIoU"] == pytest.approx(0.816)  # numpy scalars load

