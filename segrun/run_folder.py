"""runs/<name>-<spec hash>/: the resolved spec, checkpoints, logs and metrics of one run."""
import hashlib
import json
from pathlib import Path

from attrs import frozen

from segrun.atomic_write import write_atomically
from segrun.errors import UserError
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

    def resume_checkpoint(self) -> Path | None:
        """The newest of last.ckpt (end of an epoch) and interrupted.ckpt (written when training
        stopped on an exception or Ctrl-C), or None for a run that never saved one."""
        candidates = [p for p in (self.checkpoints / "last.ckpt", self.checkpoints / "interrupted.ckpt") if p.is_file()]
        return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None

    def best_checkpoint(self) -> Path | None:
        best = sorted(self.checkpoints.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
        return best[-1] if best else None

    def write_metrics(self, metrics: dict) -> None:
        write_atomically(self.metrics_file, (json.dumps(metrics, indent=2) + "\n").encode())


def run_hash(spec: Spec) -> str:
    """8 hex digits naming the run: the resolved spec's hash, and with `init` also the content of
    the checkpoint it starts from (so a chain stage after a retrained stage is a new run)."""
    if spec.init is None:
        return spec_hash(spec)
    from segrun.lineage import file_sha256
    from segrun.models.weights import init_checkpoint

    init_digest = file_sha256(init_checkpoint(Path(spec.init)))
    return hashlib.sha256(f"{dumps(spec)}\ninit sha256 {init_digest}".encode()).hexdigest()[:8]


def planned_run_folder(spec: Spec, runs_dir: Path) -> RunFolder:
    """Where this spec runs, without creating anything."""
    return RunFolder(Path(runs_dir) / f"{spec.name}-{run_hash(spec)}")


def run_folder_for(spec: Spec, runs_dir: Path, force: bool = False) -> RunFolder:
    """The folder of this spec, created with its spec.toml. The same resolved spec (and init
    checkpoint) always maps to the same folder; with `force`, a fresh folder beside it
    (<name>-<hash>-2, -3, ...)."""
    text = dumps(spec)
    base = planned_run_folder(spec, runs_dir).path
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
    path.mkdir(parents=True, exist_ok=True)
    folder.spec_file.write_text(text)
    return folder
