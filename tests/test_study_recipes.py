"""The study's recipes: every spec in specs/study/ (every chain stage, and every published row's
evaluation spec with its overrides) holds the values of tests/reference/study_recipes.toml, a table
written from the study's own files (MIC-DKFZ/semantic_segmentation at 5298127), with the source of
each value. Loads specs only; no training."""
import functools
import inspect
import tomllib
from pathlib import Path

import pytest

from segrun.chain import load_chain, stage_spec
from segrun.losses import CLASS_WEIGHT_SETS, LOSSES
from segrun.published import evaluation_spec, is_chain, load_manifest
from segrun.spec.loader import load

STUDY = Path(__file__).resolve().parents[1] / "specs" / "study"
MANIFEST = STUDY / "results.toml"
TABLE = tomllib.loads((Path(__file__).resolve().parent / "reference" / "study_recipes.toml").read_text())
RECIPES = TABLE["recipe"]
DISAGREEMENTS = TABLE.get("disagreement", {})
NOT_SPECS = {"results.toml", "checkpoints.toml"}  # manifests beside the specs
META = {"extends", "stage", "recipe", "unchecked"}
LISTS = {"loss", "data.train_pipeline", "data.val_pipeline", "test.pipeline"}  # compared as wholes
MULTI_SCALE = ", multi-scale + flip"


# ---- the expected values ------------------------------------------------------------------------

def flatten(table: dict, prefix: str = "") -> dict:
    """{"optimizer": {"lr": 0.01}} -> {"optimizer.lr": 0.01}; lists (loss, pipelines) stay whole."""
    flat = {}
    for key, value in table.items():
        if not prefix and key in META:
            continue
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in LISTS:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def with_own(expected: dict, entry: dict) -> dict:
    expected = {**expected, **flatten(entry)}
    for key in entry.get("unchecked", ()):
        assert key in expected, f"unchecked key {key} is not in the recipe"
        del expected[key]
    return expected


@functools.cache
def recipe_values(name: str) -> dict:
    entry = RECIPES[name]
    assert "stage" not in entry, f"{name} is a chain; its stages have the values"
    base = recipe_values(entry["extends"]) if "extends" in entry else {}
    return with_own(base, entry)


def stage_values(name: str, index: int) -> dict:
    stage = RECIPES[name]["stage"][index]
    return with_own(recipe_values(stage["recipe"]), stage)


def row_key(row) -> str:
    return f"{row.dataset} | {row.model} | {row.setting.removesuffix(MULTI_SCALE)}"


def row_values(row) -> dict:
    recipe = TABLE["row"][row_key(row)]
    stages = RECIPES[recipe].get("stage")
    expected = stage_values(recipe, len(stages) - 1) if stages else recipe_values(recipe)
    protocol = row.dataset + (MULTI_SCALE if row.setting.endswith(MULTI_SCALE) else "")
    expected = {**expected, **flatten(TABLE["protocol"][protocol])}
    for label, values in TABLE["protocol"].items():
        if label.startswith("MS OCR") and (row.model_label == label or row.model_label.startswith(label + " ")):
            expected.update(flatten(values))
    return expected


# ---- the cases: (name, how to load its spec, expected values) -----------------------------------

def spec_cases():
    cases = []
    for path in sorted(STUDY.glob("*.toml")):
        if path.name in NOT_SPECS or path.name not in RECIPES:
            continue  # a missing entry fails test_every_study_spec_has_an_entry
        if is_chain(path):
            chain = load_chain(path)
            for index, stage in enumerate(chain.stage):
                cases.append((f"{path.name}[stage {index}]",
                              functools.partial(stage_spec, chain, path, index, None),
                              functools.partial(stage_values, path.name, index)))
        else:
            cases.append((path.name, functools.partial(load, path), functools.partial(recipe_values, path.name)))
    return cases


def row_cases():
    return [(f"row {row.dataset}: {row.label}", functools.partial(evaluation_spec, MANIFEST, row),
             functools.partial(row_values, row)) for row in load_manifest(MANIFEST)]


CASES = {name: (spec, expected) for name, spec, expected in spec_cases() + row_cases()}


@functools.cache
def loaded(case: str):
    return CASES[case][0]()


# ---- what a spec says for a key -----------------------------------------------------------------

@functools.cache
def albumentations_defaults(name: str) -> dict:
    import albumentations

    parameters = inspect.signature(getattr(albumentations, name)).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def pipeline_values(steps) -> list[dict]:
    return [{"name": step.name, **albumentations_defaults(step.name), **step.params} for step in steps]


def loss_values(spec) -> list[dict]:
    losses = []
    for loss in spec.loss:
        cls = LOSSES[loss.name]
        options = {}
        for klass in reversed(cls.__mro__):  # WeightedRMI passes its options on to RMI
            if "__init__" in vars(klass):
                options.update({p.name: p.default for p in inspect.signature(klass.__init__).parameters.values()
                                if p.default is not inspect.Parameter.empty})
        options.update(loss.options)
        weights = loss.class_weights  # a set's name, a list, or None
        if isinstance(weights, str):
            weights = CLASS_WEIGHT_SETS.get(weights, weights)
        losses.append({"name": loss.name, "weight": loss.weight, "options": options, "class_weights": weights})
    return losses


def actual_value(spec, key: str):
    if key in ("data.train_pipeline", "data.val_pipeline"):
        return pipeline_values(getattr(spec.data, key.split(".")[1]))
    if key == "test.pipeline":  # empty: the test images go through data.val_pipeline
        return pipeline_values(spec.test.pipeline or spec.data.val_pipeline)
    if key == "loss":
        return loss_values(spec)
    value = spec
    for part in key.split("."):
        value = getattr(value, part)
    if key == "model.pretrained" and isinstance(value, str):
        return Path(value).name
    return value


# ---- comparing ----------------------------------------------------------------------------------

def differences(actual, expected, where: str) -> list[str]:
    """Tight comparison: floats within rel=1e-12, everything else equal (booleans as booleans)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        same = type(actual) is type(expected) and actual == expected
    elif isinstance(expected, float) or (isinstance(expected, int) and isinstance(actual, float)):
        same = isinstance(actual, (int, float)) and actual == pytest.approx(expected, rel=1e-12, abs=0)
    elif isinstance(expected, list):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            return [f"{where}: the study's {expected!r}, the spec's {actual!r}"]
        return [problem for index, (a, e) in enumerate(zip(actual, expected))
                for problem in differences(a, e, f"{where}[{index}]")]
    else:
        same = actual == expected and type(actual) is type(expected)
    return [] if same else [f"{where}: the study's {expected!r}, the spec's {actual!r}"]


def step_differences(actual: list[dict], expected: list[dict], key: str) -> list[str]:
    names = [step["name"] for step in actual]
    if names != [step["name"] for step in expected]:
        return [f"{key}: the study's steps {[step['name'] for step in expected]}, the spec's {names}"]
    return [problem for index, (have, want) in enumerate(zip(actual, expected)) for name, value in want.items()
            if name != "name"
            for problem in (differences(have[name], value, f"{key}[{index}] {want['name']}.{name}") if name in have
                            else [f"{key}[{index}] {want['name']}: no parameter {name}"])]


def loss_differences(actual: list[dict], expected: list[dict]) -> list[str]:
    if len(actual) != len(expected):
        return [f"loss: the study's {len(expected)} losses {[e['name'] for e in expected]}, the spec's "
                f"{len(actual)} {[a['name'] for a in actual]}"]
    problems = []
    for index, (have, want) in enumerate(zip(actual, expected)):
        where = f"loss[{index}]"
        problems += differences(have["name"], want["name"], f"{where}.name")
        problems += differences(have["weight"], float(want["weight"]), f"{where}.weight")
        weights = want.get("class_weights")
        if weights is None:
            if have["class_weights"] is not None:
                problems.append(f"{where}.class_weights: the study's none, the spec's {have['class_weights']!r}")
        else:
            problems += differences(have["class_weights"], TABLE["class_weights"][weights], f"{where}.class_weights")
        for option, value in {**TABLE["loss_options"].get(want["name"], {}), **want.get("options", {})}.items():
            if option not in have["options"]:
                problems.append(f"{where}.{option}: loss {have['name']} has no such option")
            else:
                problems += differences(have["options"][option], value, f"{where}.{option}")
    return problems


def key_differences(spec, key: str, expected) -> list[str]:
    actual = actual_value(spec, key)
    if key == "loss":
        return loss_differences(actual, expected)
    if key in LISTS:
        return step_differences(actual, expected, key)
    return differences(actual, expected, key)


# ---- tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_spec_holds_the_studys_recipe(case):
    spec = loaded(case)
    expected = CASES[case][1]()
    problems = [problem for key, value in expected.items() if f"{case}::{key}" not in DISAGREEMENTS
                for problem in key_differences(spec, key, value)]
    assert not problems, (f"{case} differs from the study (tests/reference/study_recipes.toml):\n  "
                          + "\n  ".join(problems))


@pytest.mark.parametrize("case_key", [pytest.param(key, marks=pytest.mark.xfail(strict=True, reason=reason))
                                      for key, reason in DISAGREEMENTS.items()])
def test_known_disagreement(case_key):
    case, key = case_key.split("::")
    problems = key_differences(loaded(case), key, CASES[case][1]()[key])
    assert not problems, f"{case}: " + "; ".join(problems)


def test_every_study_spec_has_an_entry():
    files = {path.name for path in STUDY.glob("*.toml")} - NOT_SPECS
    assert files - set(RECIPES) == set(), "specs in specs/study/ without an entry in tests/reference/study_recipes.toml"
    assert set(RECIPES) - files == set(), "entries in tests/reference/study_recipes.toml without a spec"
    for name in files:
        stages = RECIPES[name].get("stage")
        if is_chain(STUDY / name):
            assert stages and len(stages) == len(load_chain(STUDY / name).stage), f"{name}: one entry per stage"
        else:
            assert stages is None, f"{name} is not a chain"
    rows = load_manifest(MANIFEST)
    assert sorted({row_key(row) for row in rows}) == sorted(TABLE["row"]), "every published row, and only those"
    assert set(DISAGREEMENTS) <= {f"{case}::{key}" for case in CASES for key in CASES[case][1]()}


def test_every_case_checks_the_recipe():
    """Each case checks the recipe's core keys, so a thin entry cannot pass for a checked one."""
    core = {"data.dataset", "data.batch_size", "data.train_pipeline", "data.val_pipeline", "optimizer.lr",
            "optimizer.momentum", "optimizer.weight_decay", "schedule.power", "trainer.epochs", "trainer.devices",
            "trainer.sync_batchnorm", "model.backbone", "test.scales", "test.flip", "test.combine", "test.pipeline"}
    for case, (_, expected) in CASES.items():
        stage = next((entry for name, entry in RECIPES.items() for index, entry in enumerate(entry.get("stage", ()))
                      if case == f"{name}[stage {index}]"), {})
        wanted = core - set(stage.get("unchecked", ()))  # keys a chain stage leaves open, with the reason
        if not case.endswith("_base.toml"):
            wanted |= {"model.name", "model.align_corners", "loss"}
        missing = wanted - set(expected())
        if case.startswith("row ") and "Coarse + RMI" in case:
            missing -= {"trainer.epochs"}  # the row's last stage: left open, the study gives no script
        assert not missing, f"{case}: no expected value for {sorted(missing)}"
