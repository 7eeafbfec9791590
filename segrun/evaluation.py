"""`segrun eval`: a trained run's checkpoint on the val split, with test-time options."""
import json
from pathlib import Path

import attrs
import pytorch_lightning as pl
import torch

from segrun import build
from segrun.atomic_write import write_atomically
from segrun.errors import UserError
from segrun.inference import describe_prediction
from segrun.metrics import format_iou_table
from segrun.resolve import eval_precision
from segrun.run_folder import locate
from segrun.spec import KeyProblem
from segrun.spec.loader import to_table


def evaluate(run_or_checkpoint: Path, progress: bool = True, out: Path | None = None, **options) -> dict:
    """Score the checkpoint with the run's spec: its [test] protocol where it has one, else its
    [eval] (validation) options, with `options` (scales, flip, sliding, combine, model_scales)
    replacing theirs where given; print the per-class table and write the scores to `out`
    (default: eval.json in the run folder). An existing file is never replaced."""
    folder, checkpoint = locate(run_or_checkpoint)
    eval_file = out or folder.path / "eval.json"
    if eval_file.exists():
        raise UserError(f"{eval_file}: already holds an evaluation; pass --out FILE to write this one elsewhere")
    spec = build.read_run_spec(folder)
    protocol = "test" if spec.test is not None else "eval"
    given = {key: value for key, value in options.items() if value is not None}
    try:
        spec = attrs.evolve(spec, **{protocol: attrs.evolve(getattr(spec, protocol), **given)})
        build.check_spec(spec)
    except ValueError as error:
        raise UserError(f"eval options: {error}") from None
    except KeyProblem as error:
        raise UserError(f"eval options: {error.problem}") from None
    task = build.task(spec, load_weights=False)
    task.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"])
    trainer = pl.Trainer(accelerator=spec.trainer.accelerator, devices=1, precision=eval_precision(spec.trainer),
                         logger=False, enable_checkpointing=False, enable_progress_bar=progress,
                         enable_model_summary=False)
    datamodule = build.datamodule(spec)
    if protocol == "test":
        trainer.test(task, datamodule=datamodule, verbose=False)
    else:
        trainer.validate(task, datamodule=datamodule, verbose=False)
    used = getattr(spec, protocol)
    result = {
        **(task.last_test_scores if protocol == "test" else task.last_val_scores),
        "protocol": protocol,
        **{key: value for key, value in to_table(used).items() if key not in ("every_n_epochs", "batch_size")},
        "checkpoint": str(checkpoint),
    }
    write_atomically(eval_file, (json.dumps(result, indent=2) + "\n").encode())
    print(f"{protocol} protocol ({describe_prediction(used)}):")
    print(format_iou_table(result))
    print(f"{eval_file}: mIoU {result['mIoU']:.4f}")
    return result
