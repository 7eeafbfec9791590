"""The HRNet/OCR study's Lightning checkpoints and HRNet-Semantic-Segmentation's released files load
into segrun's models whole and give the same outputs.

The files are written from key tables transcribed from the original code (the study's
models/hrnet.py, hrnet_ocr.py, hrnet_ocr_aspp.py, hrnet_ocr_ms.py at 01ce0da3 and
HRNet-Semantic-Segmentation's seg_hrnet.py and seg_hrnet_ocr.py): each table row names a module as
the original does, the segrun module that holds the same tensors, and the tensors' shapes. At
HRNet-W18-small the key structure is W48's with other widths: 240 channels out of the backbone
(16 + 32 + 64 + 128) where W48 has 720.
"""
import json
from pathlib import Path

import pytest
import torch

from segrun import models
from segrun.cli import main
from segrun.errors import UserError
from segrun.models.weights import load_trained

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "hrnet_w18_small"
WIDTH = 16 + 32 + 64 + 128  # the four branches concatenated
CLASSES = 3
BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def conv(out_channels, in_channels, kernel=1, bias=False) -> dict:
    shapes = {"weight": (out_channels, in_channels, kernel, kernel)}
    return {**shapes, "bias": (out_channels,)} if bias else shapes


def bn(channels) -> dict:
    return {name: () if name == "num_batches_tracked" else (channels,) for name in BN_TENSORS}


# ---- the backbone: HRNet's module names (study.md 5a), generated from W18-small's configuration ----

LAYER1_BLOCKS = 1  # Bottleneck blocks of stage 1 (4 at W48)
STAGES = ((2, 2, 2), (3, 3, 2), (4, 4, 2))  # stage, branches, BasicBlocks per branch; one module each (W48: 1, 4, 3)


def backbone_modules() -> list[tuple[str, str]]:
    """(module, "conv" or "bn") of the segmentation HRNet's backbone, in its own names."""
    modules = [("conv1", "conv"), ("bn1", "bn"), ("conv2", "conv"), ("bn2", "bn")]
    for block in range(LAYER1_BLOCKS):
        modules += [(f"layer1.{block}.{kind}{i}", kind) for i in (1, 2, 3) for kind in ("conv", "bn")]
    modules += [("layer1.0.downsample.0", "conv"), ("layer1.0.downsample.1", "bn")]
    modules += [("transition1.0.0", "conv"), ("transition1.0.1", "bn")]  # 256 (W18-small: 128) -> first branch
    for stage, branches, blocks in STAGES:
        new = branches - 1  # the transition before a stage adds its lowest-resolution branch; the others are None
        modules += [(f"transition{stage - 1}.{new}.0.0", "conv"), (f"transition{stage - 1}.{new}.0.1", "bn")]
        module = f"stage{stage}.0"
        for branch in range(branches):
            for block in range(blocks):
                modules += [(f"{module}.branches.{branch}.{block}.{kind}{i}", kind) for i in (1, 2) for kind in ("conv", "bn")]
        for i in range(branches):
            for j in range(branches):
                if j > i:  # 1x1 conv + BN, then upsampled
                    modules += [(f"{module}.fuse_layers.{i}.{j}.0", "conv"), (f"{module}.fuse_layers.{i}.{j}.1", "bn")]
                for k in range(i - j):  # i - j stride-2 3x3 conv + BN steps down
                    modules += [(f"{module}.fuse_layers.{i}.{j}.{k}.0", "conv"), (f"{module}.fuse_layers.{i}.{j}.{k}.1", "bn")]
    return modules


# ---- the heads: (original module, segrun module, tensor shapes) ------------------------------------

def hrnetv2_head(classes):  # seg_hrnet.py and the study's hrnet.py: last_layer = conv, BN, ReLU, conv
    return [("last_layer.0", "head.0", conv(WIDTH, WIDTH, bias=True)), ("last_layer.1", "head.1", bn(WIDTH)),
            ("last_layer.3", "head.3", conv(classes, WIDTH, bias=True))]


def object_context(original, segrun):  # _ObjectAttentionBlock: conv then ModuleHelper.BNReLU (BN at .0)
    rows = []
    for name in ("f_pixel", "f_object"):
        rows += [(f"{name}.0", conv(256, 512)), (f"{name}.1.0", bn(256)), (f"{name}.2", conv(256, 256)), (f"{name}.3.0", bn(256))]
    rows += [("f_down.0", conv(256, 512)), ("f_down.1.0", bn(256)), ("f_up.0", conv(512, 256)), ("f_up.1.0", bn(512))]
    return [(f"{original}.object_context_block.{m}", f"{segrun}.object_context_block.{m}", shapes) for m, shapes in rows]


def flat_ocr_head(classes):  # seg_hrnet_ocr.py and the study's hrnet_ocr.py (OCRNet)
    return [
        ("conv3x3_ocr.0", "ocr.conv3x3_ocr.0", conv(512, WIDTH, 3, bias=True)),
        ("conv3x3_ocr.1", "ocr.conv3x3_ocr.1.0", bn(512)),  # nn.Sequential(conv, BatchNorm2d, ReLU)
        *object_context("ocr_distri_head", "ocr.ocr_distri_head"),
        ("ocr_distri_head.conv_bn_dropout.0", "ocr.ocr_distri_head.conv_bn_dropout.0", conv(512, 1024)),
        ("ocr_distri_head.conv_bn_dropout.1.0", "ocr.ocr_distri_head.conv_bn_dropout.1.0", bn(512)),
        ("cls_head", "ocr.cls_head", conv(classes, 512, bias=True)),
        ("aux_head.0", "ocr.aux_head.0", conv(WIDTH, WIDTH, bias=True)),
        ("aux_head.1", "ocr.aux_head.1.0", bn(WIDTH)),  # nn.Sequential(conv, BatchNorm2d, ReLU, conv)
        ("aux_head.3", "ocr.aux_head.2", conv(classes, WIDTH, bias=True)),
    ]


def ocr_block(classes, in_channels, fused_channels):  # the study's OCR_block (NVIDIA's), under `ocr.`
    rows = [
        ("ocr.conv3x3_ocr.0", conv(512, in_channels, 3, bias=True)), ("ocr.conv3x3_ocr.1.0", bn(512)),  # BNReLU
        ("ocr.ocr_distri_head.conv_bn_dropout.0", conv(512, fused_channels)), ("ocr.ocr_distri_head.conv_bn_dropout.1.0", bn(512)),
        ("ocr.cls_head", conv(classes, 512, bias=True)),
        ("ocr.aux_head.0", conv(in_channels, in_channels, bias=True)), ("ocr.aux_head.1.0", bn(in_channels)),  # BNReLU
        ("ocr.aux_head.2", conv(classes, in_channels, bias=True)),
    ]
    # segrun took OCR_block's names
    return [(original, original, shapes) for original, shapes in rows] + object_context("ocr.ocr_distri_head", "ocr.ocr_distri_head")


def aspp(prefix, in_channels):  # AtrousSpatialPyramidPoolingModule: 1x1, three dilated 3x3, image pooling
    rows = [("features.0.0", conv(256, in_channels)), ("features.0.1", bn(256))]
    for rate in (1, 2, 3):
        rows += [(f"features.{rate}.0", conv(256, in_channels, 3)), (f"features.{rate}.1", bn(256))]
    rows += [("img_conv.0", conv(256, in_channels)), ("img_conv.1", bn(256))]
    return [(f"{prefix}.{m}", f"{prefix}.{m}", shapes) for m, shapes in rows]


SCALE_ATTENTION = [(f"scale_attn.{m}", f"scale_attn.{m}", shapes) for m, shapes in (
    ("conv0", conv(256, 512, 3)), ("bn0", bn(256)), ("conv1", conv(256, 256, 3)), ("bn1", bn(256)), ("conv2", conv(1, 256)))]

STUDY_MODELS = ("hrnet", "hrnet_ocr", "hrnet_ocr_aspp", "hrnet_ocr_ms")


def study_layout(model_name, classes) -> tuple[bool, list]:
    """(whether the original holds the backbone under `backbone.`, its head table)."""
    return {
        "hrnet": (False, hrnetv2_head(classes)),
        "hrnet_ocr": (False, flat_ocr_head(classes)),
        "hrnet_ocr_aspp": (True, aspp("aspp", WIDTH) + ocr_block(classes, 1280, 2 * 512 + 1280)
                           + aspp("ocr.ocr_distri_head.aspp", 512)),
        "hrnet_ocr_ms": (True, ocr_block(classes, WIDTH, 2 * 512) + SCALE_ATTENTION),
    }[model_name]


OFFICIAL_LAYOUTS = {"seg_hrnet": "hrnet", "seg_hrnet_ocr": "hrnet_ocr"}  # same names as the study's flat models


def random_tensor(name, shape, generator):
    if name == "num_batches_tracked":
        return torch.randint(1, 1000, shape, generator=generator)
    if name == "running_var":
        return torch.rand(shape, generator=generator) + 0.5
    return torch.randn(shape, generator=generator) * 0.1


def original_checkpoint(model_name, classes=CLASSES) -> tuple[dict, dict]:
    """(the original's state dict, the same tensors under segrun's names) with random values."""
    nested_backbone, head = study_layout(model_name, classes)
    own = small(model_name, classes=classes).state_dict()
    rows = [(module, f"backbone.{module}", {name: own[f"backbone.{module}.{name}"].shape for name in
                                              (BN_TENSORS if kind == "bn" else ("weight",))})
            for module, kind in backbone_modules()]
    rows = [(f"backbone.{o}" if nested_backbone else o, s, shapes) for o, s, shapes in rows] + head
    generator = torch.Generator().manual_seed(0)
    original, segrun = {}, {}
    for original_module, segrun_module, shapes in rows:
        for name, shape in shapes.items():
            original[f"{original_module}.{name}"] = segrun[f"{segrun_module}.{name}"] = random_tensor(name, shape, generator)
    assert set(segrun) == set(own), "the key table and segrun's model hold different tensors"
    return original, segrun


def small(name, seed=1, classes=CLASSES):
    torch.manual_seed(seed)
    return models.create(name, classes, backbone=BACKBONE).eval()


def assert_loads_exactly(model_name, path, segrun_state):
    reference = small(model_name, seed=2)
    reference.load_state_dict(segrun_state)
    target = small(model_name, seed=3)
    summary = load_trained(target, path)
    assert "missing: none; unexpected: none; shape differs: none" in summary
    assert all(torch.equal(value, segrun_state[key]) for key, value in target.state_dict().items())
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected, got = reference(images), target(images)
    assert len(expected) == len(got) and all(torch.equal(e, g) for e, g in zip(expected, got))
    return summary


@pytest.mark.parametrize("model_name", STUDY_MODELS)
def test_a_study_lightning_checkpoint_loads_whole_with_the_same_outputs(model_name, tmp_path):
    original, segrun_state = original_checkpoint(model_name)
    # SegModel(LightningModule) holds the network as self.model; metrics and best_metric_val are not persistent.
    checkpoint = {"epoch": 399, "global_step": 99600, "pytorch-lightning_version": "1.6.4",
                  "state_dict": {f"model.{key}": value for key, value in original.items()},
                  "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01, "params": [0]}]}]}
    torch.save(checkpoint, tmp_path / "best_epoch_399_mIoU_0.8144.ckpt")
    assert_loads_exactly(model_name, tmp_path / "best_epoch_399_mIoU_0.8144.ckpt", segrun_state)


@pytest.mark.parametrize("release", list(OFFICIAL_LAYOUTS))
@pytest.mark.parametrize("variant", ["released", "in_state_dict", "without_prefix"])
def test_an_hrnet_semantic_segmentation_file_loads_whole_with_the_same_outputs(release, variant, tmp_path):
    model_name = OFFICIAL_LAYOUTS[release]
    original, segrun_state = original_checkpoint(model_name)
    # tools/train.py saves FullModel(model, loss).state_dict(): the model under `model.`, the loss beside it.
    released = {**{f"model.{key}": value for key, value in original.items()},
                "loss.criterion.weight": torch.ones(CLASSES)}
    content = {"released": released, "in_state_dict": {"epoch": 484, "best_mIoU": 0.81, "state_dict": released},
               "without_prefix": original}[variant]
    torch.save(content, tmp_path / f"{release}_cityscapes.pth")
    summary = assert_loads_exactly(model_name, tmp_path / f"{release}_cityscapes.pth", segrun_state)
    assert ("not model weights, ignored: loss.criterion.weight" in summary) == (variant != "without_prefix")


def test_a_checkpoint_of_another_model_is_refused_naming_what_differs(tmp_path):
    original, _ = original_checkpoint("hrnet_ocr")
    torch.save({"state_dict": {f"model.{key}": value for key, value in original.items()}}, tmp_path / "ocr.ckpt")
    target = small("hrnet")
    before = {key: value.clone() for key, value in target.state_dict().items()}
    with pytest.raises(UserError, match=r"ocr\.ckpt: does not fit this model \(.*missing: head\.0\.bias.*unexpected: "
                                        r"aux_head\.0\.bias.*check model\.name, model\.backbone"):
        load_trained(target, tmp_path / "ocr.ckpt")
    assert all(torch.equal(value, before[key]) for key, value in target.state_dict().items())


def test_eval_scores_a_study_checkpoint_with_a_spec_as_the_same_weights_in_segrun_names(tmp_path, tiny_spec, monkeypatch,
                                                                                       capsys):
    spec_file = tiny_spec()  # hrnet at W18-small on synthetic Cityscapes-layout data, 19 classes
    original, segrun_state = original_checkpoint("hrnet", classes=19)
    torch.save({"state_dict": {f"model.{key}": value for key, value in original.items()}}, tmp_path / "study.ckpt")
    torch.save({"state_dict": {f"model.{key}": value for key, value in segrun_state.items()}}, tmp_path / "segrun.ckpt")
    monkeypatch.chdir(tmp_path)

    assert main(["eval", "study.ckpt", "--spec", str(spec_file), "--no-progress"]) == 0
    study = json.loads((tmp_path / "study.eval.json").read_text())
    assert f"weights: {len(segrun_state)} tensors from study.ckpt; missing: none; unexpected: none" in capsys.readouterr().out
    assert study["checkpoint"] == str(tmp_path.resolve() / "study.ckpt") and study["spec"] == str(spec_file.resolve()) and study["protocol"] == "eval"
    assert main(["eval", "segrun.ckpt", "--spec", str(spec_file), "--out", "twin.json", "--no-progress"]) == 0
    assert study["confusion_matrix"] == json.loads((tmp_path / "twin.json").read_text())["confusion_matrix"]
    capsys.readouterr()

    assert main(["eval", "study.ckpt", "--spec", str(spec_file)]) == 2
    assert "study.eval.json: already holds an evaluation; pass --out FILE" in capsys.readouterr().err
    assert main(["eval", "study.ckpt", "--spec", str(spec_file), "model.backbone=hrnet_w18_small_v2", "--out", "v2.json"]) == 2
    assert "study.ckpt: does not fit this model" in capsys.readouterr().err and not (tmp_path / "v2.json").exists()
    assert main(["eval", "study.ckpt"]) == 2  # not in a run folder, and no spec
    assert "or --spec SPEC to evaluate a weights file" in capsys.readouterr().err


# What the study's loaders take from NVIDIA's Mapillary MS OCR file (models/hrnet_ocr.py and
# hrnet_ocr_ms.py at 5298127): MS OCR drops ocr.aux_head and ocr.cls_head by name; OCR drops them
# too, and its key renaming (.replace('ocr.', '')) also misses ocr.conv3x3_ocr; HRNet takes the backbone.
STUDY_TAKES_FROM_MAPILLARY = {
    "cityscapes_hrnet_mapillary.toml": ("backbone.",),
    "cityscapes_ocr_mapillary.toml": ("backbone.", "ocr.ocr_distri_head."),
    "cityscapes_ms_ocr_mapillary.toml": ("backbone.", "ocr.conv3x3_ocr.", "ocr.ocr_distri_head.", "scale_attn."),
    "cityscapes_ms_ocr_mapillary_rmi.toml": ("backbone.", "ocr.conv3x3_ocr.", "ocr.ocr_distri_head.", "scale_attn."),
}


@pytest.mark.parametrize("spec_name", STUDY_TAKES_FROM_MAPILLARY)
def test_a_mapillary_row_takes_from_nvidias_file_what_the_study_takes(spec_name, tmp_path):
    from segrun import build
    from segrun.models.weights import load_pretrained

    original, _ = original_checkpoint("hrnet_ocr_ms", classes=65)  # NVIDIA's MS OCR layout, Mapillary's classes
    path = tmp_path / "mapillary_ocrnet.HRNet_Mscale_fast-rattlesnake.pth"
    torch.save({"state_dict": {f"module.{key}": value for key, value in original.items()}}, path)
    spec = build.load_spec(REPO / "specs" / "study" / spec_name, [f"model.backbone={BACKBONE}"], pipelines=False)
    model = small(spec.model.name, classes=19)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    summary = load_pretrained(model, path, spec.model.pretrained_skip or ())
    taken = {key for key, value in model.state_dict().items() if not torch.equal(value, before[key])}
    assert taken == {key for key in before if key.startswith(STUDY_TAKES_FROM_MAPILLARY[spec_name])}, summary


def test_the_from_scratch_rows_start_from_pytorchs_default_init():
    """The study's scratch runs keep every layer as PyTorch built it: convolutions uniform within
    1/sqrt(fan_in), batch norm weight 1 and bias 0; timm's HRNet init (He normal) falls outside."""
    from segrun import build

    for name in ("cityscapes_hrnet_scratch.toml", "cityscapes_ocr_scratch.toml", "cityscapes_ms_ocr_scratch.toml"):
        spec = build.load_spec(REPO / "specs" / "study" / name, [f"model.backbone={BACKBONE}"], pipelines=False)
        assert spec.model.backbone_init == "pytorch" and spec.model.pretrained is False, name
    outside = {}
    for backbone_init in ("pytorch", "timm"):
        spec = build.load_spec(REPO / "specs" / "study" / "cityscapes_hrnet_scratch.toml",
                               [f"model.backbone={BACKBONE}", f"model.backbone_init={backbone_init}"], pipelines=False)
        torch.manual_seed(0)
        backbone = build.model(spec).backbone
        convolutions = [m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
        outside[backbone_init] = sum(
            bool((m.weight.abs() > (m.weight[0].numel()) ** -0.5).any()) for m in convolutions)
        for norm in (m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and not norm.bias.any()
    assert outside == {"pytorch": 0, "timm": outside["timm"]} and outside["timm"] > 0


def test_pascal_context_validation_resizes_the_longer_side_to_520_then_pads_as_the_study():
    import numpy as np

    from segrun import build
    from segrun.data.transforms import build_pipeline

    spec = build.load_spec(REPO / "specs" / "study" / "pascal_context59_hrnet.toml")
    image = np.full((375, 500, 3), 200, np.uint8)
    label = np.zeros((375, 500), np.uint8)
    label[:, 250:] = 7
    out = build_pipeline(spec.data.val_pipeline)(image=image, mask=label)
    mask = out["mask"].numpy()
    assert mask.shape == (520, 520)
    # 375x500 -> 390x520, padded by 65 rows above and below (PadIfNeeded centres, in the study as here)
    assert (mask[65:455] != 255).all() and (mask[:65] == 255).all() and (mask[455:] == 255).all()
    assert set(np.unique(mask[65:455])) == {0, 7} and mask[100, 259] == 0 and mask[100, 261] == 7
    test = build_pipeline(spec.test.pipeline)(image=image, mask=label)  # the reported numbers: original size
    assert test["mask"].shape == (375, 500)
