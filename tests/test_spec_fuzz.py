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


# Documents that start valid (a name and data.root) and fill the other sections with their own keys
# and values of the right kind most of the time, so that loading reaches every section and the
# round trip, not only the first missing key.
def section(fields: dict) -> st.SearchStrategy:
    keys = sorted(fields)
    return st.lists(st.sampled_from(keys), unique=True, max_size=4).flatmap(
        lambda chosen: st.fixed_dictionaries({key: fields[key] if key == "name" else
                                              st.one_of(*[fields[key]] * 7, scalars)  # a wrong kind 1 time in 8
                                              for key in chosen}))


SECTIONS = {
    "model": section({"name": st.sampled_from(["hrnet", "hrnet_ocr", "hrnet_ocr_ms", "bogus"]),
                      "backbone": st.sampled_from(["hrnet_w18_small", "hrnet_w48"]), "align_corners": st.booleans(),
                      "pretrained": st.sampled_from([False, "weights.pth"])}),
    "optimizer": section({"name": st.sampled_from(["sgd", "adamw"]), "lr": st.floats(1e-5, 1.0),
                          "momentum": st.floats(0.0, 1.0), "weight_decay": st.floats(0.0, 1e-2),
                          "nesterov": st.booleans(), "betas": st.tuples(st.floats(0.5, 0.99), st.floats(0.9, 0.9999))}),
    "schedule": section({"name": st.sampled_from(["poly", "constant"]), "power": st.floats(0.1, 2.0),
                         "warmup_steps": st.integers(0, 100)}),
    "trainer": section({"epochs": st.integers(1, 400), "max_steps": st.integers(-1, 100),
                        "precision": st.sampled_from(["auto", "32", "bf16-mixed"]), "devices": st.just(1),
                        "accelerator": st.just("cpu"), "log_every_n_steps": st.integers(1, 50),
                        "accumulate_grad_batches": st.integers(1, 4), "deterministic": st.booleans()}),
    "eval": section({"scales": st.lists(st.floats(0.25, 2.0), min_size=1, max_size=3), "flip": st.booleans(),
                     "every_n_epochs": st.integers(1, 5), "batch_size": st.integers(1, 4),
                     "combine": st.sampled_from(["mean_probabilities", "sum_logits"])}),
    "test": section({"scales": st.lists(st.floats(0.25, 2.0), min_size=1, max_size=3), "flip": st.booleans(),
                     "sliding": st.tuples(st.integers(32, 512), st.integers(32, 512))}),
}
losses = st.lists(st.one_of(
    section({"name": st.sampled_from(["ce", "rmi", "dc", "topk"]), "weight": st.floats(0.0, 2.0)}),
    section({"name": st.sampled_from(["wce", "wrmi"]), "weight": st.floats(0.0, 2.0),
             "class_weights": st.just("cityscapes")})), min_size=1, max_size=1)
structured_documents = st.fixed_dictionaries(
    {"name": st.just("ok"), "data": st.fixed_dictionaries({"root": st.just("r")}, optional={
        "batch_size": st.integers(1, 8), "dataset": st.sampled_from(["cityscapes", "pascal_context59"])})},
    optional={**SECTIONS, "loss": losses, "seed": st.integers(0, 10)})


def test_structured_documents_load_in_every_section_and_round_trip(tmp_path):
    loaded = {name: 0 for name in (*SECTIONS, "loss")}

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)  # the same draws each run
    @given(structured_documents, st.lists(overrides, max_size=1))
    def load_one(document, override_list):
        path = tmp_path / "structured.toml"
        path.write_text(tomli_w.dumps(document))
        outcome = load_outcome(path, override_list)
        if isinstance(outcome, spec.Spec):
            assert build.read_spec(spec.dumps(outcome)) == outcome
            for name in loaded.keys() & document.keys():
                loaded[name] += 1

    load_one()
    # each section was part of documents that loaded (and round-tripped)
    assert min(loaded.values()) >= 5, loaded
