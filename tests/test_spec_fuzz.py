"""Whatever TOML a user writes and whatever override they type, loading gives a Spec or a
SpecError: never another exception."""
import string

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segrun import build, spec
from segrun.spec import SpecError

KEYS = ["name", "seed", "init", "extends", "data", "root", "dataset", "batch_size", "num_workers", "synthetic",
        "train_pipeline", "val_pipeline", "model", "backbone", "align_corners", "loss", "weight", "class_weights",
        "optimizer", "lr", "momentum", "betas", "schedule", "power", "warmup_steps", "trainer", "epochs",
        "precision", "devices", "strategy", "eval", "every_n_epochs", "height", "width", "p", "bogus"]
NAMES = ["hrnet", "ce", "wce", "cityscapes", "cityscapes_synthetic", "HorizontalFlip", "RandomCrop", "Normalize",
         "sgd", "adamw", "poly", "32", "bf16-mixed", "auto", "ddp", "hrnet_w18_small", "x y", ""]

scalars = st.one_of(
    st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NAMES), st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.sampled_from(KEYS), children, max_size=5)),
    max_leaves=20,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)

override_keys = st.lists(st.one_of(st.sampled_from(KEYS), st.sampled_from(["0", "1", "x"])), min_size=1, max_size=3).map(".".join)
override_values = st.one_of(
    st.sampled_from(["1", "0", "-1", "true", "3.5", '"hrnet"', "hrnet", "[1, 2]", "{a = 1}", "[", "nan", '"', ""]),
    st.text(alphabet=string.printable, max_size=10),
)
known_keys = st.sampled_from(["seed", "trainer.epochs", "trainer.precision", "trainer.devices", "optimizer.lr",
                              "optimizer.betas", "model.backbone", "data.batch_size", "loss.0.weight", "eval.batch_size",
                              "data.synthetic.height", "schedule.warmup_steps", "init"])
plausible_values = st.sampled_from(["1", "4", "0.5", "2e-3", '"bf16-mixed"', "auto", '"hrnet_w18"', "[0.9, 0.99]",
                                    "hrnet_w18_small", "runs/x"])
overrides = st.one_of(
    st.tuples(known_keys, plausible_values).map("=".join),
    st.tuples(override_keys, override_values).map("=".join),
    st.text(max_size=12),
)


def load_outcome(path, override_list):
    try:
        return build.load_spec(path, override_list)
    except SpecError as error:
        assert "\n" not in str(error)
        return error


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents, st.lists(overrides, max_size=3))
def test_any_document_and_overrides_load_or_raise_spec_error(tmp_path, document, override_list):
    path = tmp_path / "fuzz.toml"
    path.write_text(tomli_w.dumps(document))
    outcome = load_outcome(path, override_list)
    if isinstance(outcome, spec.Spec):
        assert build.read_spec(spec.dumps(outcome)) == outcome


VALID = {"name": "ok", "data": {"root": "r"}}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(overrides, min_size=1, max_size=4))
def test_overrides_on_a_valid_spec_load_or_raise_spec_error(tmp_path, override_list):
    path = tmp_path / "valid.toml"
    path.write_text(tomli_w.dumps(VALID))
    outcome = load_outcome(path, override_list)
    if isinstance(outcome, spec.Spec):
        assert build.read_spec(spec.dumps(outcome)) == outcome


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_any_text_loads_or_raises_spec_error(tmp_path, text):
    path = tmp_path / "text.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    load_outcome(path, [])
