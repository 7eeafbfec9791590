"""Chains: stages run in order, each a spec plus overrides that starts from the best (or last)
checkpoint of the stage before it. Stages are ordinary runs, so a finished stage is found by its
run hash (which covers the checkpoint it starts from) and skipped, and an interrupted one resumes."""
from pathlib import Path
from typing import Literal

from attrs import field, frozen

from segrun import build, runner
from segrun.errors import Stopped, UserError, did_you_mean
from segrun.resolve import resolve
from segrun.run_folder import RunFolder, init_checkpoint, planned_run_folder
from segrun.smoke import smoke_overrides, smoke_runs
from segrun.spec import Spec, SpecError, dumps
from segrun.spec.loader import load_section
from segrun.spec.schema import run_name


@frozen
class Stage:
    name: str = field(validator=run_name)
    spec: str  # path of the stage's spec, relative to the chain file
    overrides: tuple[str, ...] = ()  # KEY=VALUE, as on the command line
    start_from: Literal["best", "last"] | None = None  # checkpoint of the previous stage (default best)


@frozen
class Chain:
    name: str = field(validator=run_name)
    stage: tuple[Stage, ...]  # [[stage]] tables, in order


def load_chain(path: Path) -> Chain:
    chain = load_section(path, Chain)
    if not chain.stage:
        raise SpecError(f"{path}: stage: expected at least one [[stage]] table")
    if chain.stage[0].start_from is not None:
        raise SpecError(f"{path}: stage.0.start_from: the first stage has no previous stage to start from")
    names = [stage.name for stage in chain.stage]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise SpecError(f"{path}: stage.{index}.name: stage name {name!r} is used twice")
    return chain


def stage_spec(chain: Chain, chain_path: Path, index: int, init: Path | None, extra_overrides=()) -> Spec:
    """The stage's spec with its overrides (then `extra_overrides`), named <chain>-<stage>, starting
    from `init`."""
    stage = chain.stage[index]
    overrides = [*stage.overrides, *extra_overrides, f'name="{chain.name}-{stage.name}"']
    if init is not None:
        overrides.append(f"init='{init.resolve()}'")
    try:
        return build.load_spec(chain_path.parent / stage.spec, overrides)
    except UserError as error:
        raise UserError(f"chain {chain_path}: stage {index} ({stage.name}): {error}") from None


def smoke_stage_overrides(chain: Chain, chain_path: Path, index: int, overrides=()) -> list[str]:
    """The overrides that make stage `index` its smoke run (segrun.smoke), after `overrides`."""
    return [*overrides, *smoke_overrides(stage_spec(chain, chain_path, index, None, overrides))]


def start_checkpoint(previous: RunFolder, start_from: str | None) -> Path | None:
    """The previous stage's last checkpoint, or its best (else its last, for a stage that validated
    only at its end), as `init` takes a run folder."""
    if start_from == "last":
        last = previous.checkpoints / "last.ckpt"
        return last if last.is_file() else None
    return previous.trained_checkpoint()


def _describe(label: str, status: str, stage, spec: Spec) -> None:
    """A stage of `chain --dry-run`: its status, its spec file and overrides, its resolved spec."""
    body = "".join(f"    {line}\n" for line in dumps(spec).splitlines())
    print(f"{label}: {status}\n  {stage.spec} {' '.join(stage.overrides)}\n{body}")


def stage_index(chain: Chain, chain_path: Path, stage: str) -> int:
    """The index of a stage given by its name or its number."""
    names = [s.name for s in chain.stage]
    if stage in names:
        return names.index(stage)
    if stage.isdigit() and int(stage) < len(names):
        return int(stage)
    raise UserError(f"{chain_path}: no stage {stage!r}{did_you_mean(stage, names)} (stages: {', '.join(names)}, "
                    f"or 0 to {len(names) - 1})")


def run_chain(chain_path: Path, runs_dir: Path, dry_run: bool = False, progress: bool = True, overrides=(),
              up_to: str | None = None, smoke: bool = False, force: bool = False) -> list[RunFolder]:
    """Run (or with dry_run, describe) the stages in order, each with its own overrides and then
    `overrides`, through the stage `up_to` (a name or number; default: the last); returns the stage
    run folders. `smoke`: each stage as its smoke run (segrun.smoke), in runs_dir/smoke; `force`:
    every stage trained again, into new folders."""
    chain = load_chain(chain_path)
    if smoke:
        runs_dir = smoke_runs(runs_dir)
    last = len(chain.stage) - 1 if up_to is None else stage_index(chain, chain_path, up_to)
    folders: list[RunFolder] = []
    for index, stage in enumerate(chain.stage[:last + 1]):
        stage_overrides = smoke_stage_overrides(chain, chain_path, index, overrides) if smoke else overrides
        label = f"stage {index} ({stage.name})"
        init = None
        if index > 0:
            init = start_checkpoint(folders[-1], stage.start_from) if folders else None
            if init is None:
                if not dry_run:
                    raise UserError(f"chain {chain.name}: {label} starts from the {stage.start_from or 'best'} checkpoint "
                                    f"of the previous stage, which has none")
                # Its folder's name hashes that checkpoint's content: unknown until it exists.
                source = f"the {stage.start_from or 'best'} checkpoint of stage {index - 1} ({chain.stage[index - 1].name})"
                spec = resolve(stage_spec(chain, chain_path, index, None, [*stage_overrides, f"init='<{source}>'"]))
                _describe(label, f"to run after stage {index - 1}, from {source}", stage, spec)
                folders = []
                continue
        spec = stage_spec(chain, chain_path, index, init, stage_overrides)
        spec = resolve(spec)  # the folder of the recipe this machine will run
        start = init_checkpoint(spec)
        folder = planned_run_folder(spec, runs_dir, start)
        if dry_run:
            status = "done" if folder.finished else "interrupted, will resume" if folder.path.exists() else "to run"
            _describe(label, f"{status}: {folder.path}", stage, spec)
            folders.append(folder)
            continue
        print(f"chain {chain.name}: {label} in {folder.path}")
        try:
            folders.append(runner.train(spec, runs_dir, force, progress=progress, init=start))
        except Stopped:  # a signal stopped the stage: its own line and status, and it resumes
            raise
        except Exception as error:
            raise UserError(f"chain {chain.name}: {label} failed: {error.__class__.__name__}: {error}; after fixing it, "
                            f"`segrun chain {chain_path}` continues here (finished stages are kept)") from error
    return folders
