"""segmentation_models_pytorch's architectures, generated from the registry: each trains, evaluates,
exports to ONNX and predicts through segrun.load the same as the exported model, at tiny size."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import segrun
from conftest import write_tiny_spec
from segrun import build, models
from segrun.cli import main
from segrun.models.smp_architectures import ARCHITECTURES



def test_the_registry_holds_every_smp_architecture_by_smps_name():
    import segmentation_models_pytorch as smp

    assert list(ARCHITECTURES) == list(smp.MODEL_ARCHITECTURES_MAPPING)
    assert all(models.MODELS[name].architecture == name for name in ARCHITECTURES)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_each_architecture_trains_evaluates_exports_and_predicts_as_its_export(name, tmp_path, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")
    spec = write_tiny_spec(tmp_path, model=name, train_images=4, val_images=2, batch_size=2, epochs=1)
    runs = tmp_path / "runs"
    overrides = [f'model.backbone="{models.smallest_backbone(name)}"', "trainer.max_steps=2"]
    assert main([str(spec), *overrides, "--runs", str(runs), "--no-progress"]) == 0
    (folder,) = runs.iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["trained_steps"] == 2 and 0 <= metrics["mIoU"] <= 1
    capsys.readouterr()
    assert main(["report", str(runs)]) == 0  # beside any other run, as the study's models are
    assert f"{name}/{models.smallest_backbone(name)}" in capsys.readouterr().out

    assert main(["export", str(folder), "--out", str(tmp_path / "model.onnx")]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    predictor = segrun.load(folder)
    rng = np.random.default_rng(0)
    # the training size, one no encoder stride divides, and one above PAN's smallest (256) that is not
    for height, width in ((64, 128), (45, 70), (300, 270)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        labels, scores = session.run(None, {"images": image.transpose(2, 0, 1)[None].astype(np.float32)})
        expected = predictor.probabilities(image)
        assert expected.shape == (19, height, width)
        # onnxruntime's kernels round otherwise than torch's: measured up to 1.8e-4 (manet), and for
        # pan 2 of 155,648 scores 2.2e-3 off at 64x128 (a trained PAN multiplies its features by
        # its attention, which carries the rounding further)
        difference = np.abs(scores[0] - expected)
        assert difference.max() < 1e-2 and (difference > 1e-3).mean() < 1e-4, difference.max()
        top2 = np.sort(expected, axis=0)[-2:]
        clear = (top2[1] - top2[0]) > 1e-3
        assert (labels[0] == expected.argmax(0))[clear].all()


def test_encoder_weights_come_from_a_local_file_only(tmp_path, capsys):
    spec = write_tiny_spec(tmp_path, model="unet")
    network = build.model(build.load_spec(spec, ['model.backbone="resnet18"']))
    encoder_file = tmp_path / "resnet18_encoder.pth"
    torch.save(network.network.encoder.state_dict(), encoder_file)  # as timm or SMP publish an encoder's weights
    loaded = build.load_spec(spec, ['model.backbone="resnet18"', f'model.pretrained="{encoder_file}"'])
    fresh = build.task(loaded)
    said = capsys.readouterr().out
    assert f"pretrained: {len(network.network.encoder.state_dict())} tensors from {encoder_file}; missing: " in said
    for key, value in network.network.encoder.state_dict().items():
        assert torch.equal(fresh.model.network.encoder.state_dict()[key], value), key

    assert main(["validate", str(spec), 'model.backbone="resnet18"', 'model.pretrained="imagenet"']) == 2
    err = capsys.readouterr().err
    assert "model.pretrained: imagenet: " in err and err.count("\n") == 1
    assert "segrun downloads no weights: fetch smp-hub/resnet18.imagenet on the Hugging Face hub" in err


@pytest.mark.parametrize("overrides, message", [
    (['model.name="segfromer"'], r"model\.name: unknown model 'segfromer'; did you mean segformer\?"),
    (['model.name="unet"', 'model.backbone="resnt18"'], r"model\.backbone: unknown encoder 'resnt18' for unet; "
                                                         r"did you mean resnet18\?"),
    (['model.name="unet"', 'model.backbone="tu-convnxt_tiny"'], r"model\.backbone: no timm model 'convnxt_tiny'; "
                                                                 r"did you mean convnext_tiny\?"),
    (['model.name="unet"', 'model.backbone="resnet18"', "model.decoder_chanels=[64, 32, 16, 8, 4]"],
     r"model\.decoder_chanels: model unet takes no option decoder_chanels; did you mean decoder_channels\?"),
])
def test_unknown_architectures_encoders_and_options_are_one_line(tmp_path, overrides, message, capsys):
    spec = write_tiny_spec(tmp_path)
    assert main(["validate", str(spec), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert __import__("re").search(message, err), err


def test_an_architectures_own_options_reach_it(tmp_path):
    spec = write_tiny_spec(tmp_path, model="unet")
    loaded = build.load_spec(spec, ['model.backbone="resnet18"', "model.decoder_channels=[64, 32, 16, 8, 4]"])
    assert build.model(loaded).network.segmentation_head[0].in_channels == 4


# as docs/models.md gives them (19 classes on Cityscapes, 150 on ADE20K)
SHIPPED_PARAMETERS = {"cityscapes_segformer_b2": 24_726_995, "cityscapes_upernet_convnext_t": 37_048_499,
                      "cityscapes_deeplabv3plus_r101": 45_674_339, "ade20k_segformer_b2": 24_760_662,
                      "ade20k_upernet_convnext_t": 37_082_166, "ade20k_deeplabv3plus_r101": 45_708_006}
SPECS = Path(__file__).resolve().parents[1] / "specs"
SHIPPED_SMP = sorted(path for path in (SPECS / "beyond").glob("*.toml") if "hrnet" not in path.stem)
# the HRNet spec whose recipe the SMP specs of each dataset run
BASELINES = {"cityscapes": SPECS / "study" / "cityscapes_hrnet.toml", "ade20k": SPECS / "beyond" / "ade20k_hrnet.toml"}


@pytest.mark.parametrize("path", SHIPPED_SMP, ids=lambda path: path.stem)
def test_the_shipped_smp_specs_are_the_study_baseline_recipe_with_another_model(path):
    from segrun.spec.loader import to_table

    baseline = to_table(build.load_spec(BASELINES[path.stem.split("_")[0]]))
    spec = build.load_spec(path)
    assert models.MODELS[spec.model.name].architecture == spec.model.name
    assert build.parameter_count(spec) == SHIPPED_PARAMETERS[path.stem]  # built on the meta device, as segrun counts
    table = to_table(spec)
    assert table["model"]["pretrained"].startswith("pretrained/")
    for key in ("name", "model"):
        del table[key], baseline[key]
    assert table == baseline  # the same data, losses, optimizer, schedule, trainer, eval and test


@pytest.mark.parametrize("study, shipped", [("pascal_context59_hrnet", "ade20k_hrnet"),
                                             ("pascal_context59_ocr", "ade20k_hrnet_ocr")])
def test_the_ade20k_specs_are_the_study_pascal_context_recipe_on_ade20k(study, shipped):
    from segrun.spec.loader import to_table

    expected, table = (to_table(build.load_spec(path)) for path in (SPECS / "study" / f"{study}.toml",
                                                                    SPECS / "beyond" / f"{shipped}.toml"))
    assert (table["data"]["dataset"], table["data"]["root"], table["name"]) == ("ade20k", "ade20k", shipped)
    for section, key in (("data", "dataset"), ("data", "root")):
        del table[section][key], expected[section][key]
    del table["name"], expected["name"]
    assert table == expected


def test_parameters_the_forward_leaves_unused_are_frozen_once_per_model(tmp_path, monkeypatch):
    """DDP stops on a trainable parameter without a gradient: every one left trainable gets one, and
    the probe step that finds them runs once per model, not at every build (eval, predict, chains)."""
    from segrun.models import smp_architectures

    monkeypatch.setattr(smp_architectures, "_UNUSED_PARAMETERS", {})
    probes = []
    probe = smp_architectures.SMPModel._unused_parameters
    monkeypatch.setattr(smp_architectures.SMPModel, "_unused_parameters", lambda self: probes.append(1) or probe(self))
    loaded = build.load_spec(write_tiny_spec(tmp_path, model="unet"), [
        'model.backbone="resnet18"', "model.encoder_depth=3", "model.decoder_channels=[32, 16, 8]"])
    first, second = build.model(loaded), build.model(loaded)
    assert len(probes) == 1
    frozen = {name for name, parameter in first.named_parameters() if not parameter.requires_grad}
    assert frozen == {name for name, parameter in second.named_parameters() if not parameter.requires_grad}
    assert frozen and all(".layer3." in name or ".layer4." in name for name in frozen)  # below encoder_depth
    second.train()
    sum(output.sum() for output in second(torch.rand(2, 3, 64, 96))).backward()
    assert all(parameter.grad is not None for parameter in second.parameters() if parameter.requires_grad)


def test_the_models_page_gives_what_summary_counts():
    """docs/models.md's table of the shipped specs: parameters and GMACs at 1024x2048 as `segrun summary` prints them."""
    from segrun.summary import summarize

    page = (SPECS.parent / "docs" / "models.md").read_text()
    rows = [line.split("|")[1:-1] for line in page.splitlines() if line.startswith("| `study/") or
            line.startswith("| `beyond/")]
    assert {row[0].strip(" `") for row in rows} >= {f"beyond/{path.name}" for path in (SPECS / "beyond").glob("*.toml")}
    for spec_name, _, _, parameters, macs in rows:
        said = summarize(build.load_spec(SPECS / spec_name.strip(" `")), (1024, 2048))
        assert f"parameters  {parameters.strip()}\n" in said, spec_name
        assert f"MACs        {macs.strip()} G per image at 1024x2048" in said, spec_name
