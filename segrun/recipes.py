"""Whether a run followed a recipe: its resolved spec against a wanted spec, key by key, up to what
the machine decides (where the data lie, how many loader workers, what "auto" became, where the
weights file lies) and what only changes what is printed or logged. `report --study` counts a run
toward a published row only when nothing else differs; `submit` skips a member that has such a run."""
from pathlib import PurePath

from segrun.spec import Spec
from segrun.spec.loader import to_table

# Where a run ran and what it showed, not what it computed: per-sample seeds make the loader
# workers irrelevant to the result, and the logging keys only change what is written.
MACHINE_KEYS = frozenset({"data.root", "data.num_workers", "eval.log_images", "trainer.log_every_n_steps",
                          "trainer.detect_anomaly"})
AUTO_KEYS = frozenset({"trainer.precision", "trainer.memory_format"})  # "auto" is resolved where the run trains
FILE_KEYS = frozenset({"model.pretrained"})  # the same weights file, wherever the user keeps it


def flatten(table, prefix: str = "") -> dict[str, object]:
    """{dotted key: value} of a TOML table; arrays of tables are indexed (loss.0.name)."""
    flat = {}
    items = table.items() if isinstance(table, dict) else enumerate(table)
    for key, value in items:
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
            flat |= flatten(value, f"{dotted}.")
        else:
            flat[dotted] = value
    return flat


def _same(key: str, have, want) -> bool:
    if key in AUTO_KEYS and want == "auto":
        return True
    if key in FILE_KEYS and isinstance(have, str) and isinstance(want, str):
        return PurePath(have).name == PurePath(want).name
    return have == want


def differences(run: Spec, wanted: Spec, ignore=()) -> list[str]:
    """The dotted keys where `run` (a run's resolved spec) is not the recipe `wanted` (a spec as
    written, "auto" allowed), leaving out MACHINE_KEYS and the keys (or sections) in `ignore`."""
    have, want = flatten(to_table(run)), flatten(to_table(wanted))

    def ignored(key: str) -> bool:
        return key in MACHINE_KEYS or any(key == i or key.startswith(f"{i}.") for i in ignore)

    return sorted(key for key in have.keys() | want.keys()
                  if not ignored(key) and not _same(key, have.get(key), want.get(key)))
