"""runs/<name>-<spec hash>/: the resolved spec, checkpoints, logs and metrics of one run, and
which of its checkpoints a command starts from."""
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from attrs import frozen
from filelock import FileLock, Timeout

from segrun.atomic_write import write_atomically
from segrun.errors import UserError, why_not_there
from segrun.lineage import file_sha256
from segrun.spec import Spec, dumps, spec_hash


@frozen
class RunFolder:
    path: Path

    @property
    def spec_file(self) -> Path:
        return self.path / "spec.toml"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def finished(self) -> bool:
        return self.metrics_file.is_file()

    def latest_checkpoint(self) -> Path | None:
        """The newest of last.ckpt (end of an epoch) and interrupted.ckpt (written when training
        stopped on an exception or Ctrl-C), or None for a run that never saved one."""
        candidates = [p for p in (self.checkpoints / "last.ckpt", self.checkpoints / "interrupted.ckpt") if p.is_file()]
        return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None

    def best_checkpoint(self) -> Path | None:
        best = sorted(self.checkpoints.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
        return best[-1] if best else None

    def trained_checkpoint(self) -> Path | None:
        """What a finished or interrupted run has to offer: its best checkpoint, else its last."""
        return self.best_checkpoint() or self.latest_checkpoint()

    def resume_point(self, check: Callable[[Path], tuple[int, int]]) -> "ResumePoint":
        """The newest checkpoint training can resume from (last, interrupted or best), verified by
        `check(path) -> (epoch, step)`, which raises UserError for a file that does not load. Each
        newer file that fails is moved aside (see `_move_aside`), never deleted."""
        saved = [p for p in (self.checkpoints / "last.ckpt", self.checkpoints / "interrupted.ckpt",
                             *self.checkpoints.glob("best-*.ckpt")) if p.is_file()]
        moved = []
        for path in sorted(saved, key=lambda p: p.stat().st_mtime, reverse=True):
            try:
                epoch, step = check(path)
            except UserError as error:
                moved.append(MovedAside(path, _move_aside(path), str(error).removeprefix(f"{path}: ")))
                continue
            return ResumePoint(path, epoch, step, tuple(moved))
        return ResumePoint(None, 0, 0, tuple(moved))

    def read_metrics(self) -> dict:
        """metrics.json, or a UserError naming it when it is not JSON (truncated by a full disk or a
        copy cut short, edited by hand)."""
        try:
            return json.loads(self.metrics_file.read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"{self.metrics_file}: not readable as JSON ({type(error).__name__}: "
                            f"{str(error)[:80]})") from None

    def set_unreadable_metrics_aside(self) -> str | None:
        """If metrics.json does not read, move it aside (see _move_aside) and say so in one line; the
        run is then evaluated again. None when it reads."""
        try:
            self.read_metrics()
            return None
        except UserError as error:
            moved = _move_aside(self.metrics_file)
            return f"{error}; moved aside as {moved.name}, and the trained run is evaluated again"

    def write_metrics(self, metrics: dict) -> None:
        write_atomically(self.metrics_file, (json.dumps(metrics, indent=2) + "\n").encode())


@frozen
class InitCheckpoint:
    """The checkpoint a spec's `init` starts from, found and hashed once per command: the run
    folder's name, the weights the model starts from and metrics.json's "init" entry all take it."""
    path: Path
    sha256: str

    def as_json(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256}


@frozen
class MovedAside:
    original: Path
    now: Path
    why: str


@frozen
class ResumePoint:
    """Where training resumes: `checkpoint` (None: from the start) at `epoch` and `step`, and the
    newer checkpoints that did not load, moved aside."""
    checkpoint: Path | None
    epoch: int
    step: int
    moved_aside: tuple[MovedAside, ...]

    def describe(self, folder: RunFolder) -> str | None:
        """One line for the user, or None for a fresh run."""
        moved = "; ".join(f"{m.original.name} moved aside as {m.now.name} ({m.why})" for m in self.moved_aside)
        if self.checkpoint is None:
            return f"{folder.path}: no checkpoint loads, so training starts again from epoch 0; {moved}" if moved else None
        if not moved:
            return f"resuming {folder.path} from {self.checkpoint.name}"
        return (f"resuming {folder.path} from {self.checkpoint.name} (epoch {self.epoch}, step {self.step}), the newest "
                f"checkpoint that loads; {moved}")


def _move_aside(path: Path) -> Path:
    """Rename a checkpoint that does not load to <name>.unreadable-<time>: kept for the user to
    inspect, and no longer ending in .ckpt, so neither Lightning nor segrun takes it for one."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target, number = path.with_name(f"{path.name}.unreadable-{stamp}"), 2
    while target.exists():
        target, number = path.with_name(f"{path.name}.unreadable-{stamp}-{number}"), number + 1
    path.rename(target)
    return target


def init_checkpoint(spec: Spec) -> InitCheckpoint | None:
    """The checkpoint `init` names: the file itself, or a run folder's best (else last) checkpoint;
    None for a spec without `init`."""
    if spec.init is None:
        return None
    path = Path(spec.init)
    if path.is_dir():
        checkpoint = RunFolder(path).trained_checkpoint()
        if checkpoint is None:
            raise UserError(f"init: {path} holds no checkpoints/*.ckpt; point init at a run folder that trained")
    elif path.is_file():
        checkpoint = path
    else:
        raise UserError(f"init: {path}: {why_not_there(path, 'checkpoint')}")
    return InitCheckpoint(checkpoint, file_sha256(checkpoint))


def locate(run_or_checkpoint: Path) -> tuple[RunFolder, Path]:
    """(run folder, checkpoint) for a run folder (its best, else last, checkpoint) or a .ckpt inside one."""
    if run_or_checkpoint.is_dir():
        folder = RunFolder(run_or_checkpoint)
        checkpoint = folder.trained_checkpoint()
        if checkpoint is None:
            raise UserError(f"{run_or_checkpoint}: no checkpoints/*.ckpt in this run folder; train it first")
    elif run_or_checkpoint.is_file():
        checkpoint = run_or_checkpoint
        folder = RunFolder(checkpoint.resolve().parent.parent)
    else:
        raise UserError(f"{run_or_checkpoint}: {why_not_there(run_or_checkpoint, 'run folder or checkpoint')}")
    if not folder.spec_file.is_file():
        raise UserError(f"{folder.spec_file}: missing; segrun eval needs the run folder the checkpoint was trained in, "
                        "or --spec SPEC to evaluate a weights file with that spec's model and dataset")
    return folder, checkpoint


def run_hash(spec: Spec, init: InitCheckpoint | None) -> str:
    """8 hex digits naming the run: the resolved spec's hash, and with `init` (the spec's
    init_checkpoint) also the content of the checkpoint it starts from (so a chain stage after a
    retrained stage is a new run)."""
    if init is None:
        return spec_hash(spec)
    return hashlib.sha256(f"{dumps(spec)}\ninit sha256 {init.sha256}".encode()).hexdigest()[:8]


def planned_run_folder(spec: Spec, runs_dir: Path, init: InitCheckpoint | None) -> RunFolder:
    """Where this spec runs, without creating anything."""
    return RunFolder(Path(runs_dir) / f"{spec.name}-{run_hash(spec, init)}")


def run_folder_for(spec: Spec, runs_dir: Path, init: InitCheckpoint | None, force: bool = False) -> RunFolder:
    """The folder of this spec, created with its spec.toml. The same resolved spec (and init
    checkpoint) always maps to the same folder; with `force`, a fresh folder beside it
    (<name>-<hash>-2, -3, ...)."""
    text = dumps(spec)
    runs_dir = Path(runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise UserError(f"{runs_dir}: is a file, not a folder for run folders; pass --runs FOLDER (or set SEGRUN_RUNS)")
    base = planned_run_folder(spec, runs_dir, init).path
    path = base
    if force:
        suffix = 2
        while path.exists():
            path, suffix = base.with_name(f"{base.name}-{suffix}"), suffix + 1
    folder = RunFolder(path)
    if folder.spec_file.is_file():
        if folder.spec_file.read_text() != text:
            raise UserError(f"{folder.spec_file}: holds another spec than this one although the hash matches; "
                            f"move {path} away or run with --force")
        return folder
    # Whole or absent: a half-written spec.toml would fail the next run with "holds another spec".
    try:
        write_atomically(folder.spec_file, text.encode())
    except OSError as error:  # read-only, full, a file where a folder should be
        raise UserError(f"{runs_dir}: cannot write the run folder {path.name} there ({error.strerror or error}); "
                        "pass --runs a writable folder (or set SEGRUN_RUNS)") from None
    return folder


def global_zero() -> bool:
    """Whether this process is the first of a run's processes, from the environment the launchers
    set (Lightning's LOCAL_RANK and NODE_RANK for the processes it starts, torchrun's RANK, SLURM's
    SLURM_PROCID); a process none of them names is the first."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


@contextmanager
def sole_writer(folder: RunFolder):
    """Hold the run folder's lock while this process trains in it: a second start of the same run
    is refused with one line naming the holder. The lock is the operating system's (flock), so it
    dies with its process: a killed run never blocks the next start. Only the first of a run's
    processes (global_zero) takes it; the others train with it."""
    if not global_zero():
        yield
        return
    lock = FileLock(folder.path / ".lock")
    holder = folder.path / ".lock.holder"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            said = json.loads(holder.read_text())
            who = f"process {said['pid']} on {said['host']}, since {said['since']}"
        except (OSError, ValueError, KeyError):
            who = "another process"
        raise UserError(f"{folder.path}: {who} is training this run; wait for it to end, or stop it (it resumes "
                        "with the same command)") from None
    try:
        write_atomically(holder, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                             "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        yield
    finally:
        holder.unlink(missing_ok=True)  # the lock says nothing once released: no one holds it
        lock.release()
