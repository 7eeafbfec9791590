"""`segrun submit`: experiments sent to SLURM through submitit. A member is one run to train (a spec
with overrides, a sweep member, a study row's spec with a seed) or one stage of a chain, with the
evaluations its study rows need after it. Members whose run has finished are skipped; the others go
out as job arrays (one per set of resources), each chain's stages as jobs that wait for the stage
before (afterok). A job that SLURM preempts, or that reaches its time limit (submitit's USR2, 90 s
before), stops at a step boundary and is requeued (segrun.stopping); it resumes where it stopped."""
import fnmatch
import hashlib
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs
import submitit
from attrs import field, frozen

from segrun import build
from segrun.chain import load_chain, stage_index, stage_spec
from segrun.errors import UserError
from segrun.published import evaluation_spec, is_chain, load_manifest
from segrun.recipes import differences
from segrun.run_folder import RunFolder
from segrun.spec import Spec, SpecError
from segrun.spec.loader import load_section
from segrun.spec.schema import at_least
from segrun.sweep import sweep_members


def minutes(text: str) -> int:
    """SLURM's time formats (MM, HH:MM:SS, D-HH[:MM[:SS]]) in minutes, rounded up."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise ValueError(f"expected a SLURM time such as 24:00:00, 90 or 2-00:00:00, got {text!r}")
    days, first, second, third = (int(part) if part else None for part in match.groups())
    if days is None and second is None:  # MM
        hours, mins, secs = 0, first, 0
    elif days is None and third is None:  # MM:SS
        hours, mins, secs = 0, first, second
    else:  # HH:MM:SS, or D-HH[:MM[:SS]]
        hours, mins, secs = first, second or 0, third or 0
    return (days or 0) * 1440 + hours * 60 + mins + (1 if secs else 0)


def _time(_instance, _attribute, value: str) -> None:
    minutes(value)


@frozen
class ClusterOptions:
    """What every job asks SLURM for beyond what its spec says (nodes, tasks and GPUs come from the
    spec's [trainer]: num_nodes, devices, accelerator): a [cluster] table (--cluster FILE) or flags."""
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = field(default="24:00:00", validator=_time)  # per job: a longer run is requeued at the limit and resumes
    cpus_per_task: int | None = field(default=None, validator=attrs.validators.optional(at_least(1)))  # default: data.num_workers + 1
    mem: str | None = None  # per node, as sbatch --mem takes it: 64G
    constraint: str | None = None
    array_parallelism: int = field(default=256, validator=at_least(1))  # members of one array running at once
    setup: tuple[str, ...] = ()  # shell lines the job runs first: module load ..., source venv/bin/activate
    sbatch: tuple[str, ...] = ()  # any other sbatch option: "--exclusive", "--gres=gpu:a100:2"


@frozen
class ClusterFile:
    cluster: ClusterOptions = ClusterOptions()


def load_cluster_options(path: Path | None, flags: dict) -> ClusterOptions:
    """The [cluster] table of `path` (if given), with the flags that were set replacing its keys."""
    options = load_section(path, ClusterFile).cluster if path is not None else ClusterOptions()
    try:
        return attrs.evolve(options, **{key: value for key, value in flags.items() if value is not None})
    except ValueError as error:
        raise UserError(f"submit: {error}") from None


@frozen
class Evaluation:
    """A study row's evaluation of a trained run: segrun.evaluation.evaluate's options (those of
    `segrun eval`), into a file of the run folder."""
    options: tuple[tuple[str, object], ...]  # (scales, flip, sliding, combine, model_scales) as pairs
    file: str

    def arguments(self) -> tuple[str, ...]:
        """The same as `segrun eval` options."""
        options = dict(self.options)
        arguments = ["--scales", ",".join(map(str, options["scales"])), "--combine", options["combine"]]
        if options["flip"]:
            arguments.append("--flip")
        if options["sliding"]:
            arguments += ["--sliding", "x".join(map(str, options["sliding"]))]
        if options["model_scales"]:
            arguments += ["--model-scales", ",".join(map(str, options["model_scales"]))]
        return tuple(arguments)


@frozen
class Member(submitit.helpers.Checkpointable):
    """One job's work: train `spec` (or run the chain `spec` through stage `up_to`) with `overrides`
    into `runs`, then the evaluations. Checkpointable: at a time limit outside training, submitit
    requeues the same member, which goes on from what its run folder holds."""
    spec: Path
    overrides: tuple[str, ...]
    runs: Path
    up_to: str | None = None  # the chain's stage this job runs (earlier ones are done, or skipped as done)
    evaluations: tuple[Evaluation, ...] = ()
    label: str = ""

    def command(self) -> list[str]:
        if self.up_to is None:
            return ["segrun", str(self.spec), *self.overrides, "--runs", str(self.runs)]
        return ["segrun", "chain", str(self.spec), *self.overrides, "--up-to", self.up_to, "--runs", str(self.runs)]

    def _train(self) -> RunFolder:
        from segrun import runner
        from segrun.chain import run_chain

        if self.up_to is None:
            return runner.train(build.load_spec(self.spec, self.overrides), self.runs, progress=False)
        return run_chain(self.spec, self.runs, progress=False, overrides=self.overrides, up_to=self.up_to)[-1]

    def __call__(self) -> None:
        from segrun import quiet
        from segrun.evaluation import evaluate
        from segrun.exits import run_as_command

        quiet.install()
        trained: list[RunFolder] = []
        status = run_as_command(lambda: trained.append(self._train()))
        if status != 0 or not trained:
            # An error fails the job. A stop on a signal (status 0 under SLURM) ends it without a
            # result, as submitit's own requeue does: SLURM runs the member again, and it resumes.
            sys.exit(status)
        for evaluation in self.evaluations:
            out = trained[0].path / evaluation.file
            if not out.exists():  # written once; a requeued job does not evaluate again
                status = run_as_command(evaluate, trained[0].path, progress=False, out=out, **dict(evaluation.options))
                if status != 0:
                    sys.exit(status)


def _evaluation(trained: Spec, row_spec: Spec) -> Evaluation | None:
    """What a row needs beyond the run's own [test] protocol (in metrics.json), or None."""
    if row_spec.test == trained.test:
        return None
    test = row_spec.test
    options = (("scales", test.scales), ("flip", test.flip), ("sliding", test.sliding), ("combine", test.combine),
               ("model_scales", test.model_scales))
    name = [f"{len(test.scales)}scales", *(["flip"] if test.flip else []),
            *([f"ms{'_'.join(map(str, test.model_scales))}"] if test.model_scales else []),
            hashlib.sha256(repr(options).encode()).hexdigest()[:4]]  # two protocols never share a file
    return Evaluation(options, f"eval-{'-'.join(name)}.json")


# ---- members --------------------------------------------------------------------------------------

def _finished(spec: Spec, runs: Path, ignore=()) -> RunFolder | None:
    """A finished run under `runs` whose spec is this recipe (same name and seed; see segrun.recipes)."""
    for path in sorted(Path(runs).glob(f"{spec.name}-*/metrics.json")):
        folder = RunFolder(path.parent)
        try:
            ran = build.read_run_spec(folder)
        except (OSError, UserError):
            continue
        if not differences(ran, spec, ignore):
            return folder
    return None


def _chain_members(path: Path, overrides: Sequence[str], runs: Path, evaluations=(), label="") -> list[Member]:
    chain = load_chain(path)
    return [Member(path, tuple(overrides), runs, stage.name, evaluations if index == len(chain.stage) - 1 else (),
                   f"{label or chain.name} stage {stage.name}") for index, stage in enumerate(chain.stage)]


def _chain_finished(path: Path, overrides: Sequence[str], runs: Path) -> RunFolder | None:
    chain = load_chain(path)
    return _finished(stage_spec(chain, path, len(chain.stage) - 1, None, overrides), runs, ignore=("init",))


def sweep_plan(spec_path: Path, overrides, sweeps, seeds: int | None, runs: Path) -> tuple[list[list[Member]], list[Path]]:
    """(sequences of members to submit, the finished runs left out) for a spec or chain, its
    overrides, swept keys and seeds: each sequence runs its members one after the other."""
    spec_path, runs = Path(spec_path).resolve(), Path(runs).resolve()  # jobs start elsewhere
    plan, finished = [], []
    for member_overrides in sweep_members(overrides, sweeps, seeds):
        label = " ".join([Path(spec_path).name, *member_overrides])
        if is_chain(Path(spec_path)):
            done = _chain_finished(Path(spec_path), member_overrides, runs)
            sequence = _chain_members(Path(spec_path), member_overrides, runs, label=label)
        else:
            try:
                spec = build.load_spec(spec_path, member_overrides)
            except UserError as error:
                raise UserError(f"member {label}: {error}") from None
            done = _finished(spec, runs)
            sequence = [Member(Path(spec_path), tuple(member_overrides), runs, label=label)]
        if done is not None:
            finished.append(done.path)
        else:
            plan.append(sequence)
    return plan, finished


def _row_matches(row, patterns: Sequence[str]) -> bool:
    names = (row.spec, Path(row.spec).stem, row.label, row.table, f"{row.dataset}:{row.label}")
    return not patterns or any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names)


def study_plan(manifest: Path, patterns: Sequence[str], seeds: int, runs: Path) -> tuple[list[list[Member]], list[Path]]:
    """The rows matching `patterns` (their spec file, table or label, shell wildcards allowed) x
    seeds: each row's spec (or chain) trains once per seed, and after it every evaluation its
    selected rows need beyond its own [test] protocol."""
    manifest, runs = Path(manifest).resolve(), Path(runs).resolve()  # jobs start elsewhere
    rows = [row for row in load_manifest(manifest) if _row_matches(row, patterns)]
    if not rows:
        raise UserError(f"{manifest}: no row matches {' '.join(patterns)}; match a spec file (cityscapes_ocr*.toml), "
                        "a table ('Going Further') or a row label ('MS OCR*')")
    by_spec: dict[str, list] = {}
    for row in rows:
        by_spec.setdefault(row.spec, []).append(row)
    plan, finished = [], []
    for spec_name, spec_rows in by_spec.items():
        path = Path(manifest).parent / spec_name
        for seed in range(seeds):
            overrides = [f"seed={seed}"]
            trained = evaluation_spec(manifest, attrs.evolve(spec_rows[0], overrides=()))
            evaluations = tuple(dict.fromkeys(filter(None, (
                _evaluation(trained, evaluation_spec(manifest, row)) for row in spec_rows))))
            label = f"{spec_name} seed={seed}"
            if is_chain(path):
                done = _chain_finished(path, overrides, runs)
                sequence = _chain_members(path, overrides, runs, evaluations, label)
            else:
                done = _finished(build.load_spec(path, overrides), runs)
                sequence = [Member(path, tuple(overrides), runs, evaluations=evaluations, label=label)]
            if done is not None and all((done.path / e.file).exists() for e in evaluations):
                finished.append(done.path)
            else:
                plan.append(sequence)
    return plan, finished


# ---- submitting -----------------------------------------------------------------------------------

@frozen
class Resources:
    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    cpus_per_task: int


def resources(member: Member, options: ClusterOptions) -> Resources:
    """One task per device on each of the spec's nodes (Lightning reads the ranks from SLURM)."""
    try:
        if member.up_to is None:
            spec = build.load_spec(member.spec, member.overrides)
        else:
            chain = load_chain(member.spec)
            spec = stage_spec(chain, member.spec, stage_index(chain, member.spec, member.up_to), None, member.overrides)
    except SpecError as error:
        raise UserError(str(error)) from None
    trainer = spec.trainer
    devices = trainer.devices if isinstance(trainer.devices, int) and trainer.devices > 0 else 1
    gpus = devices if trainer.accelerator in ("gpu", "cuda") else 0
    workers = spec.data.num_workers
    cpus = options.cpus_per_task or (workers + 1 if isinstance(workers, int) else 8)
    return Resources(trainer.num_nodes, devices, gpus, cpus)


def _sbatch_options(options: ClusterOptions) -> dict:
    extra = {}
    for option in options.sbatch:
        key, sep, value = option.lstrip("-").partition("=")
        extra[key] = value if sep else True
    return {"requeue": True, **extra}  # preempted jobs go back to the queue


def _executor(folder: Path, options: ClusterOptions, need: Resources, name: str, after: str | None = None):
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=1000)  # a long run takes many time limits
    parameters = {"job_name": name, "time": minutes(options.time), "nodes": need.nodes,
                  "ntasks_per_node": need.tasks_per_node, "cpus_per_task": need.cpus_per_task,
                  "array_parallelism": options.array_parallelism, "additional_parameters": _sbatch_options(options),
                  "setup": list(options.setup)}
    if need.gpus_per_node:
        parameters["gpus_per_node"] = need.gpus_per_node
    for key in ("partition", "account", "qos", "mem", "constraint"):
        if getattr(options, key) is not None:
            parameters[key] = getattr(options, key)
    if after is not None:
        parameters["dependency"] = f"afterok:{after}"
    executor.update_parameters(**parameters)
    return executor


def submit(plan: list[list[Member]], options: ClusterOptions, jobs_folder: Path) -> list[str]:
    """Submit the plan: the first member of every sequence in job arrays (one per set of resources),
    each later member as a job after the one before it. Returns a line per job."""
    lines = []
    first_jobs: dict[int, object] = {}
    groups: dict[Resources, list[int]] = {}
    for index, sequence in enumerate(plan):
        groups.setdefault(resources(sequence[0], options), []).append(index)
    for need, indices in groups.items():
        executor = _executor(jobs_folder, options, need, "segrun")
        with executor.batch():
            jobs = [executor.submit(plan[index][0]) for index in indices]
        for index, job in zip(indices, jobs):
            first_jobs[index] = job
            lines.append(f"job {job.job_id}: {plan[index][0].label}")
    for index, sequence in enumerate(plan):
        previous = first_jobs[index].job_id
        for member in sequence[1:]:
            executor = _executor(jobs_folder, options, resources(member, options), "segrun", after=previous)
            job = executor.submit(member)
            lines.append(f"job {job.job_id}: {member.label} (after job {previous})")
            previous = job.job_id
    return lines


def print_plan(plan: list[list[Member]]) -> list[str]:
    """The plan as shell commands, one per member in order, for another scheduler."""
    lines = []
    for sequence in plan:
        for member in sequence:
            lines.append(shlex.join(member.command()))
            for evaluation in member.evaluations:
                lines.append("  then: " + shlex.join(["segrun", "eval", "RUN_FOLDER_OF_THE_LINE_ABOVE",
                                                      *evaluation.arguments(), "--out",
                                                      f"RUN_FOLDER_OF_THE_LINE_ABOVE/{evaluation.file}"]))
    return lines


def jobs_folder(runs: Path) -> Path:
    """Where submitit keeps each job's pickles and logs (<job id>_<task>_log.out / .err)."""
    return Path(os.path.abspath(runs)) / "slurm" / "%j"

