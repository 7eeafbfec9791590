"""`segrun eval`: a trained run's checkpoint, or a weights file with a spec, on the val split with
the spec's test protocol (else its validation options) and test-time options."""
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytorch_lightning as pl

from segrun import build, quiet
from segrun.atomic_write import write_atomically
from segrun.data.datamodule import ensure_dataset
from segrun.errors import UserError, why_not_there
from segrun.inference import describe_prediction
from segrun.metrics import format_iou_table
from segrun.models.weights import load_run_checkpoint, load_trained
from segrun.progress import ProgressBar
from segrun.published import published_checkpoint
from segrun.resolve import eval_precision, training_device
from segrun.run_folder import locate
from segrun.spec import Spec
from segrun.spec.loader import to_table
from segrun.task import SegmentationTask


def _unused(eval_file: Path) -> Path:
    if eval_file.exists():
        raise UserError(f"{eval_file}: already holds an evaluation; pass --out FILE to write this one elsewhere")
    return eval_file


def evaluate(run_or_checkpoint: Path, progress: bool = True, out: Path | None = None, **options) -> dict:
    """Score the checkpoint with the run's spec (see `_score`); the scores go to `out` (default:
    eval.json in the run folder). An existing file is never replaced."""
    folder, checkpoint = locate(run_or_checkpoint)
    eval_file = _unused(out or folder.path / "eval.json")

    def load(task: SegmentationTask) -> None:
        load_run_checkpoint(task, checkpoint)

    return _score(build.read_run_spec(folder), load, eval_file, progress, options, {"checkpoint": str(checkpoint)})


def evaluate_weights(weights: Path, spec_file: Path, overrides: Sequence[str] = (), progress: bool = True,
                     out: Path | None = None, **options) -> dict:
    """Score a weights file in any layout segrun.models.weights reads (the HRNet/OCR study's
    Lightning checkpoints, HRNet-Semantic-Segmentation's released files, a segrun checkpoint) with
    the model, dataset and protocol of a spec, without a run folder. The file must fill the spec's
    model exactly. The scores go to `out` (default: <weights stem>.eval.json in the current folder);
    an existing file is never replaced."""
    if weights.is_dir():
        raise UserError(f"{weights}: --spec evaluates a weights file, not a folder; a run folder brings its own spec, "
                        "evaluate it without --spec")
    if not weights.is_file():
        raise UserError(f"{weights}: {why_not_there(weights, 'weights file')}")
    eval_file = _unused(out or Path(f"{weights.stem}.eval.json"))
    spec = build.load_spec(spec_file, overrides)

    def load(task: SegmentationTask) -> None:
        print(load_trained(task.model, weights))

    released = published_checkpoint(weights, spec_file)
    source = {"checkpoint": str(weights.resolve()), "spec": str(Path(spec_file).resolve()), "overrides": list(overrides)}
    if released is not None:
        source["published"] = {"mIoU": released.published, "source": released.source}
    result = _score(spec, load, eval_file, progress, options, source)
    if released is not None:
        print(f"published for {weights.name}: {released.published:.2f} ({released.source}); this evaluation: "
              f"{100 * result['mIoU']:.2f} ({100 * result['mIoU'] - released.published:+.2f})")
    return result


def _score(spec: Spec, load: Callable[[SegmentationTask], None], eval_file: Path, progress: bool, options: dict,
           source: dict) -> dict:
    """Score the weights `load` puts into the spec's task with its [test] protocol where it has one,
    else its [eval] (validation) options, `options` (scales, flip, sliding, combine, model_scales)
    replacing theirs where given; print the per-class table and write the scores, the protocol
    used and `source` (what was evaluated) to `eval_file`."""
    given = {key: value for key, value in options.items() if value is not None}
    spec, protocol = build.reported_protocol(spec, given, "eval options")
    task = build.task(spec, load_weights=False)
    load(task)  # before the data: a file that does not load is said at once
    ensure_dataset(spec.data, progress)  # as training would: a spec's [data.synthetic] written where missing
    quiet.install()
    # on the GPU where there is one (a spec's "gpu" on a machine without one evaluates on the CPU)
    trainer = pl.Trainer(accelerator=training_device(spec.trainer), devices=1, precision=eval_precision(spec.trainer),
                         logger=False, enable_checkpointing=False, enable_progress_bar=progress,
                         callbacks=[ProgressBar()] if progress else [], enable_model_summary=False)
    datamodule = build.datamodule(spec)
    if protocol == "test":
        trainer.test(task, datamodule=datamodule, verbose=False)
    else:
        trainer.validate(task, datamodule=datamodule, verbose=False)
    used = getattr(spec, protocol)
    result = {
        **(task.last_test_scores if protocol == "test" else task.last_val_scores),
        "protocol": protocol,
        "options": to_table(used),
        **source,
    }
    write_atomically(eval_file, (json.dumps(result, indent=2) + "\n").encode())
    print(f"{protocol} protocol ({describe_prediction(used)}):")
    print(format_iou_table(result))
    print(f"{eval_file}: mIoU {result['mIoU']:.4f}")
    return result
