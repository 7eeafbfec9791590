"""A manifest of published results (specs/study/results.toml): each row is one number a paper
published, with the spec (or chain) that reproduces its training and the overrides that give its
evaluation. `segrun report --study` reads it to put reproduced runs beside the published numbers."""
from pathlib import Path

from attrs import frozen

from segrun import build
from segrun.chain import load_chain, stage_spec
from segrun.spec import Spec, SpecError
from segrun.spec.loader import load_section


@frozen
class PublishedRow:
    table: str  # the paper's table the number is from
    dataset: str  # segrun's dataset name
    model: str  # segrun's model name
    model_label: str  # the paper's name for the model, e.g. "MS OCR [0.5, 1., 2.]"
    setting: str  # the paper's row or column label, e.g. "wRMI", "Mapillary + RMI + Coarse"
    spec: str  # a spec or chain (*_chain.toml), relative to the manifest
    published_best: float  # mIoU in percent of the run the paper marks best
    published_mean: float  # mean of its runs
    overrides: tuple[str, ...] = ()  # KEY=VALUE on the spec (on a chain: its last stage) for the evaluation
    published_runs: tuple[float, ...] = ()  # every run's mIoU, where the paper lists them
    note: str | None = None  # what a reader should know about this number

    @property
    def label(self) -> str:
        return f"{self.model_label} / {self.setting}"


@frozen
class Manifest:
    row: tuple[PublishedRow, ...]


def load_manifest(path: Path) -> list[PublishedRow]:
    """The rows of a manifest, each spec path checked to exist (SpecError naming the row otherwise)."""
    path = Path(path)
    rows = list(load_section(path, Manifest).row)
    if not rows:
        raise SpecError(f"{path}: row: expected at least one [[row]] table")
    for index, row in enumerate(rows):
        if not (path.parent / row.spec).is_file():
            raise SpecError(f"{path}: row.{index}.spec: no such file {path.parent / row.spec}; the path is relative "
                            f"to {path.parent}")
    return rows


def is_chain(path: Path) -> bool:
    return path.name.endswith("_chain.toml")


def evaluation_spec(manifest: Path, row: PublishedRow) -> Spec:
    """The spec whose [test] protocol gives the row's number: the row's spec, or its chain's last
    stage, with the row's overrides."""
    path = Path(manifest).parent / row.spec
    if is_chain(path):
        chain = load_chain(path)
        return stage_spec(chain, path, len(chain.stage) - 1, None, row.overrides)
    return build.load_spec(path, row.overrides)


def chain_specs(manifest: Path, row: PublishedRow) -> list[Spec]:
    """The specs of the row's chain stages in order (without the init each starts from), or [] for
    a row of a single spec."""
    path = Path(manifest).parent / row.spec
    if not is_chain(path):
        return []
    chain = load_chain(path)
    return [stage_spec(chain, path, index, None) for index in range(len(chain.stage))]


@frozen
class PublishedCheckpoint:
    file: str  # the released file's name, as its upstream publishes it
    spec: str  # the spec (relative to the manifest) that evaluates it as its upstream does
    source: str  # where the number is published: repository, commit, README line, protocol
    published: float  # the val mIoU, in percent, its upstream publishes for it


@frozen
class CheckpointManifest:
    checkpoint: tuple[PublishedCheckpoint, ...]


MANIFEST_NAME = "checkpoints.toml"  # the manifest of released checkpoints, beside their specs


def load_checkpoint_manifest(path: Path) -> list[PublishedCheckpoint]:
    path = Path(path)
    rows = list(load_section(path, CheckpointManifest).checkpoint)
    for index, row in enumerate(rows):
        if not (path.parent / row.spec).is_file():
            raise SpecError(f"{path}: checkpoint.{index}.spec: no such file {path.parent / row.spec}")
    return rows


def published_checkpoint(weights: Path, spec_file: Path) -> PublishedCheckpoint | None:
    """The released checkpoint `weights` is, evaluated with `spec_file`: a row of the manifest beside
    the spec naming both (by the file's name), or None."""
    manifest = Path(spec_file).parent / MANIFEST_NAME
    if not manifest.is_file():
        return None
    return next((row for row in load_checkpoint_manifest(manifest) if row.file == Path(weights).name and
                 (manifest.parent / row.spec).resolve() == Path(spec_file).resolve()), None)
