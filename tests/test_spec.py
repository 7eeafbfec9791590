from pathlib import Path

import pytest

from segrun import build, spec
from segrun.spec import SpecError

REPO = Path(__file__).resolve().parents[1]


def test_minimal_spec_gets_defaults(write_spec, minimal_spec):
    loaded = build.load_spec(write_spec(minimal_spec))
    assert loaded.name == "tiny"
    assert loaded.model.name == "hrnet" and loaded.model.backbone == "hrnet_w48"
    assert [loss.name for loss in loaded.loss] == ["ce"]
    assert loaded.trainer.precision == "auto" and loaded.trainer.memory_format == "auto"


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "specs").rglob("*.toml")
                                        if not p.name.endswith(("_chain.toml", "results.toml", "checkpoints.toml"))),
                         ids=lambda p: p.name)
def test_shipped_specs_round_trip(path):
    loaded = build.load_spec(path)
    assert build.read_spec(spec.dumps(loaded)) == loaded
    assert spec.spec_hash(build.read_spec(spec.dumps(loaded))) == spec.spec_hash(loaded)


def test_extends_merges_tables_and_replaces_arrays(write_spec):
    write_spec("""
name = "base"
seed = 3
[data]
root = "base-root"
batch_size = 4
[[data.train_pipeline]]
name = "HorizontalFlip"
[[data.train_pipeline]]
name = "Normalize"
[trainer]
epochs = 10
precision = "16-mixed"
""", "base.toml")
    child = write_spec("""
extends = "base.toml"
name = "child"
[data]
batch_size = 8
[[data.train_pipeline]]
name = "Normalize"
[trainer]
epochs = 20
""", "child.toml")
    loaded = build.load_spec(child)
    assert loaded.name == "child" and loaded.seed == 3
    assert loaded.data.root == "base-root" and loaded.data.batch_size == 8
    assert [step.name for step in loaded.data.train_pipeline] == ["Normalize"]
    assert loaded.trainer.epochs == 20 and loaded.trainer.precision == "16-mixed"


def test_extends_chain_of_three(tmp_path, write_spec):
    (tmp_path / "bases").mkdir()
    write_spec('name = "a"\n[data]\nroot = "r"\n[trainer]\nepochs = 2\n', "bases/a.toml")
    write_spec('extends = "a.toml"\n[trainer]\nepochs = 3\n', "bases/b.toml")
    child = write_spec('extends = "bases/b.toml"\nname = "c"\n')
    loaded = build.load_spec(child)
    assert (loaded.name, loaded.data.root, loaded.trainer.epochs) == ("c", "r", 3)


def test_overrides_use_toml_values(write_spec, minimal_spec):
    loaded = build.load_spec(write_spec(minimal_spec), [
        "trainer.epochs=400", "model.name=hrnet", 'model.backbone="hrnet_w18"', "optimizer.lr=2e-3",
        "optimizer.betas=[0.8, 0.9]", "trainer.sync_batchnorm=true", "data.synthetic.height=64",
    ])
    assert loaded.trainer.epochs == 400
    assert loaded.model.backbone == "hrnet_w18"
    assert loaded.optimizer.lr == 0.002 and loaded.optimizer.betas == (0.8, 0.9)
    assert loaded.trainer.sync_batchnorm is True
    assert loaded.data.synthetic.height == 64


def test_override_indexes_arrays_of_tables(write_spec, minimal_spec):
    path = write_spec(minimal_spec + '[[loss]]\nname = "ce"\n')
    assert build.load_spec(path, ["loss.0.weight=0.4"]).loss[0].weight == 0.4
    with pytest.raises(SpecError, match=r"override 'loss\.3\.weight=1': loss is an array of 1; index it with 0\.\.0"):
        build.load_spec(path, ["loss.3.weight=1"])


def test_resolved_spec_hash_ignores_spelling_but_not_values(write_spec, minimal_spec):
    a = build.load_spec(write_spec(minimal_spec))
    b = build.load_spec(write_spec("seed = 0\n" + minimal_spec + "[trainer]\nepochs = 1\n", "b.toml"))
    c = build.load_spec(write_spec("seed = 1\n" + minimal_spec, "c.toml"))
    assert spec.spec_hash(a) == spec.spec_hash(b) != spec.spec_hash(c)
    assert len(spec.spec_hash(a)) == 8


# ---- every error: one line, the file, the dotted key, what was expected -------------------

ERROR_CASES = {
    "unknown key": ("[trainer]\nepoch = 3\n", [], r"spec\.toml: trainer\.epoch: unknown key; did you mean trainer\.epochs\?"),
    "unknown section": ("[traner]\nepochs = 3\n", [], r"spec\.toml: traner: unknown key; did you mean trainer\?"),
    "wrong type": ('[trainer]\nepochs = "ten"\n', [], r"spec\.toml: trainer\.epochs: expected an integer, got 'ten'"),
    "bool is not int": ("[trainer]\nepochs = true\n", [], r"trainer\.epochs: expected an integer, got True"),
    "out of range": ("[trainer]\nepochs = 0\n", [], r"spec\.toml: trainer\.epochs: expected a number >= 1, got 0"),
    "negative lr": ("[optimizer]\nlr = -0.1\n", [], r"optimizer\.lr: expected a number > 0\.0"),
    "literal": ('[trainer]\nprecision = "16-mix"\n', [], r"trainer\.precision: expected one of 'auto', '32', '16-mixed', 'bf16-mixed', got '16-mix'; did you mean 16-mixed\?"),
    "unknown model": ('[model]\nname = "hrnet_ocrr"\n', [], r"spec\.toml: model\.name: unknown model 'hrnet_ocrr'; did you mean hrnet_ocr\?"),
    "unknown backbone": ('[model]\nbackbone = "hrnet-w48"\n', [], r"model\.backbone: unknown backbone 'hrnet-w48'; did you mean hrnet_w48\? \(known: hrnet_w18,"),
    "unknown loss": ('[[loss]]\nname = "cee"\n', [], r"spec\.toml: loss\.0\.name: unknown loss 'cee'; did you mean ce\?"),
    "unknown dataset": ('', ['data.dataset="cityscape"'], r"override 'data\.dataset=\"cityscape\"': data\.dataset: unknown dataset 'cityscape'; did you mean cityscapes\?"),
    "unknown strategy": ('[trainer]\nstrategy = "dpp"\n', [], r"trainer\.strategy: unknown strategy 'dpp'; did you mean ddp\?"),
    "loss count": ('[[loss]]\nname = "ce"\n[[loss]]\nname = "ce"\n', [], r"loss: 2 \[\[loss\]\] tables for the 1 outputs of model hrnet \(out\)"),
    "weights length": ('[[loss]]\nname = "wce"\nclass_weights = [1.0, 2.0]\n', [], r"loss\.0\.class_weights: expected 19 class weights .* got 2"),
    "weights missing": ('[[loss]]\nname = "wce"\n', [], r"loss\.0\.class_weights: loss wce needs class_weights"),
    "weights on ce": ('[[loss]]\nname = "ce"\nclass_weights = "cityscapes"\n', [], r"loss ce takes no class_weights \(the weighted variant is wce\)"),
    "unknown weight set": ('[[loss]]\nname = "wce"\nclass_weights = "cityscape"\n', [], r"unknown class weight set 'cityscape'; did you mean cityscapes\?"),
    "unknown transform": ('[[data.train_pipeline]]\nname = "HorizontalFlipp"\n', [], r"data\.train_pipeline\.0\.name: unknown albumentations transform 'HorizontalFlipp'; did you mean HorizontalFlip\?"),
    "unknown transform arg": ('[[data.val_pipeline]]\nname = "RandomCrop"\nheight = 4\nwidht = 4\n', [], r"data\.val_pipeline\.0\.widht: RandomCrop takes no argument 'widht'; did you mean width\?"),
    "invalid transform arg": ('[[data.val_pipeline]]\nname = "RandomCrop"\nheight = -4\nwidth = 4\n', [], r"data\.val_pipeline\.0\.name: RandomCrop: height: Input should be greater than or equal to 1"),
    "wrong type by override": ('', ['data.root=1'], r"override 'data\.root=1': data\.root: expected a string, got 1"),
    "bad override syntax": ('', ["trainer.epochs"], r"override 'trainer\.epochs': expected KEY=VALUE with a dotted key"),
    "bad override key": ('', ["trainer..epochs=3"], r"override 'trainer\.\.epochs=3': expected KEY=VALUE"),
    "bad override value": ('', ["trainer.epochs=[1,"], r"override 'trainer\.epochs=\[1,': the value '\[1,' is not a TOML value"),
    "override into value": ('', ["name.x=1"], r"override 'name\.x=1': name is a value, not a table"),
    "override makes a table": ('', ["seed.x=1"], r"override 'seed\.x=1': seed: expected an integer, got \{'x': 1\}"),
    "override unknown key": ('', ["trainer.epoch=3"], r"override 'trainer\.epoch=3': trainer\.epoch: unknown key; did you mean trainer\.epochs\?"),
    "bad name": ('', ['name="a b"'], r"name: expected a name of letters, digits"),
    "invalid toml": ("[trainer\n", [], r"spec\.toml: invalid TOML"),
    "mscale on a plain model": ("[model]\nmscale_training = false\n", [], r"model\.mscale_training: model hrnet takes no option mscale_training \(it takes no options\)"),
    "a model option misspelt": ('[model]\nname = "hrnet_ocr_ms"\nmscale_trainig = false\n', [], r"model\.mscale_trainig: model hrnet_ocr_ms takes no option mscale_trainig; did you mean mscale_training\? \(it takes: mscale_training\)"),
    "a model option of the wrong kind": ('[model]\nname = "hrnet_ocr_ms"\nmscale_training = "no"\n', [], r"model\.mscale_training: expected true or false, got 'no'"),
    "a fixed model key misspelt": ("[model]\nbackbon = \"hrnet_w18\"\n", [], r"model\.backbon: model hrnet takes no option backbon; did you mean backbone\?"),
    "a skip that names no tensor": ('[model]\nname = "hrnet_ocr"\nbackbone = "hrnet_w18_small"\npretrained = "w.pth"\n'
                                    'pretrained_skip = ["ocr.aux_hed"]\n[[loss]]\n[[loss]]\n', [],
                                    r"model\.pretrained_skip\.0: no tensor of model hrnet_ocr is named 'ocr\.aux_hed' or "
                                    r"under it; did you mean ocr\.aux_head\?"),
    "a skip without weights": ('[model]\npretrained_skip = ["head"]\n', [],
                               r"model\.pretrained_skip: leaves tensors of model\.pretrained out, which is not set"),
    "ms scales without 1.0": ('[model]\nname = "hrnet_ocr_ms"\nmscale_training = false\n[[loss]]\n[[loss]]\n[eval]\nmodel_scales = [0.5, 2.0]\n', [], r"eval\.model_scales: expected 1\.0 among the scales \(the attention fuses them"),
    "model scales on a plain model": ('[test]\nmodel_scales = [1.0]\n', [], r"test\.model_scales: model hrnet does not fuse scales; only hrnet_ocr_ms takes model_scales"),
    "bad combine": ('[test]\ncombine = "sum"\n', [], r"test\.combine: expected one of 'mean_probabilities', 'sum_logits', got 'sum'"),
    "bad test pipeline": ('[[test.pipeline]]\nname = "Normalise"\n', [], r"test\.pipeline\.0\.name: unknown albumentations transform 'Normalise'; did you mean Normalize\?"),
    "bad scales": ("[eval]\nscales = [0.0]\n", [], r"eval\.scales: expected a non-empty list of scales in \(0, 8\]"),
    "loss option on another loss": ('[[loss]]\nname = "ce"\nradius = 3\n', [], r"loss\.0\.radius: loss ce takes no option radius \(it takes: no options\)"),
    "misspelt loss option": ('[[loss]]\nname = "rmi"\nradious = 3\n', [], r"loss\.0\.radious: loss rmi takes no option radious; did you mean radius\? \(it takes: radius, pool,"),
    "old loss option name": ('[[loss]]\nname = "rmi"\nrmi_radius = 3\n', [], r"loss\.0\.rmi_radius: renamed to radius$"),
    "rmi radius 0": ('[[loss]]\nname = "rmi"\nradius = 0\n', [], r"loss\.0\.radius: expected an integer in \[1, 10\], got 0"),
    "rmi radius type": ('[[loss]]\nname = "rmi"\nradius = "3"\n', [], r"loss\.0\.radius: expected an integer, got '3'"),
    "rmi stride mismatch": ('[[loss]]\nname = "rmi"\npool_size = 4\npool_stride = 3\n', [], r"loss\.0\.pool_stride: max pooling needs the stride equal to pool_size \(4\)"),
    "rmi pool kind": ('[[loss]]\nname = "rmi"\npool = "mean"\n', [], r"loss\.0\.pool: expected one of 'max', 'avg', 'interpolate', got 'mean'"),
    "dice background type": ('[[loss]]\nname = "dc"\nbackground = 1\n', [], r"loss\.0\.background: expected one of True, False, got 1"),
    "loss option by override": ('[[loss]]\nname = "ce"\n', ['loss.0.percent=5'], r"override 'loss\.0\.percent=5': loss\.0\.percent: loss ce takes no option percent"),
    "wrmi weights length": ('[[loss]]\nname = "wrmi"\nclass_weights = [1.0]\n', [], r"loss\.0\.class_weights: expected 19 class weights"),
    "topk percent": ('[[loss]]\nname = "topk"\npercent = 0\n', [], r"loss\.0\.percent: expected a number in \(0\.0, 100\.0\]"),
    "bad window": ("[eval]\nsliding = [512]\n", [], r"eval\.sliding: expected an array of 2 integers, got \[512\]"),
}


@pytest.mark.parametrize("override, key, value", [
    ("data.root=/data/cityscapes", ("data", "root"), "/data/cityscapes"),
    ("model.pretrained=weights/x.pth", ("model", "pretrained"), "weights/x.pth"),
    ("init=runs/a-1234abcd", ("init",), "runs/a-1234abcd"),
    ("data.root=~/data/city.scapes-2", ("data", "root"), "~/data/city.scapes-2"),
    ("model.name=hrnet", ("model", "name"), "hrnet"),
    ("seed=7", ("seed",), 7),
    ('data.root="with space"', ("data", "root"), "with space"),
])
def test_overrides_take_bare_strings_and_keep_toml_values(write_spec, minimal_spec, override, key, value):
    loaded = spec.load(write_spec(minimal_spec), [override])
    for part in key:
        loaded = getattr(loaded, part)
    assert loaded == value


@pytest.mark.parametrize("body, overrides, message", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_errors_name_file_key_and_fix(write_spec, body, overrides, message, minimal_spec):
    with pytest.raises(SpecError, match=message) as error:
        build.load_spec(write_spec(minimal_spec + body), overrides)
    assert "\n" not in str(error.value)


def test_absurd_documents_are_one_line(write_spec, minimal_spec):
    """A spec nested 100,000 arrays deep (tomllib recurses per level) and a 10 MB name."""
    deep = minimal_spec + "[model]\nz = " + "[" * 100_000 + "]" * 100_000 + "\n"
    with pytest.raises(SpecError, match=r"spec\.toml: invalid TOML: arrays or tables nested too deeply to read"):
        build.load_spec(write_spec(deep))
    with pytest.raises(SpecError, match=r"override 'model\.z=\[{60}.*\.\.\. \(100,008 characters\): nested too deeply"):
        build.load_spec(write_spec(minimal_spec), ["model.z=" + "[" * 100_000])
    long = minimal_spec.replace('name = "tiny"', 'name = "' + "a" * 10_000_000 + '"')
    with pytest.raises(SpecError, match=r"name: expected at most 200 characters \(it names the run folder, and file "
                                        r"systems allow 255\), got 10,000,000") as error:
        build.load_spec(write_spec(long))
    assert len(str(error.value)) < 300


def test_missing_required_key(write_spec):
    with pytest.raises(SpecError, match=r"spec\.toml: data: missing required key \(a table\)"):
        build.load_spec(write_spec('name = "x"\n'))


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match=r"nope\.toml: no such spec file"):
        build.load_spec(tmp_path / "nope.toml")


def test_missing_extends_file_names_the_file_that_extends(write_spec, minimal_spec):
    path = write_spec('extends = "base.toml"\n' + minimal_spec)
    with pytest.raises(SpecError, match=r"spec\.toml: extends: no such file .*base\.toml; the path is relative to"):
        build.load_spec(path)


def test_extends_cycle(write_spec):
    first = write_spec('extends = "b.toml"\nname = "a"\n', "a.toml")
    write_spec('extends = "a.toml"\n', "b.toml")
    with pytest.raises(SpecError, match=r"b\.toml: extends: cycle .*a\.toml -> .*b\.toml -> .*a\.toml; remove one"):
        build.load_spec(first)


def test_error_names_the_base_file_a_bad_key_came_from(write_spec, minimal_spec):
    write_spec(minimal_spec + "[trainer]\nepochs = -1\n", "base.toml")
    child = write_spec('extends = "base.toml"\nseed = 2\n', "child.toml")
    with pytest.raises(SpecError, match=r"base\.toml: trainer\.epochs: expected a number >= 1"):
        build.load_spec(child)
