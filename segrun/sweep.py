"""Sweeps and repeats: the cartesian product of KEY=V1,V2,... over a spec, times seeds."""
import itertools
import shlex

from segrun.errors import UserError


def split_values(text: str) -> list[str]:
    """Split at top-level commas, keeping commas inside [], {} and quotes: "1,[2, 3],'a,b'"."""
    values, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += char
    values.append(current.strip())
    return values


def sweep_members(overrides, sweeps, seeds: int | None) -> list[list[str]]:
    """The override lists of every member: overrides, then one value per swept key, then seed=i
    for i in 0..seeds-1 (when seeds is given)."""
    axes = []
    for sweep in sweeps:
        key, sep, values = sweep.partition("=")
        if not sep or not key or not values:
            raise UserError(f"--sweep {sweep!r}: expected KEY=V1,V2,... such as trainer.epochs=150,200")
        axes.append([f"{key}={value}" for value in split_values(values)])
    seed_axis = [[f"seed={seed}"] for seed in range(seeds)] if seeds else [[]]
    return [[*overrides, *combination, *seed] for combination in itertools.product(*axes) for seed in seed_axis]


def command_line(spec_path, overrides, runs_dir, smoke: bool = False) -> str:
    return shlex.join(["segrun", str(spec_path), *overrides, "--runs", str(runs_dir), *(["--smoke"] if smoke else [])])
