"""`segrun eval`: a trained run's checkpoint on the val split, with test-time options."""
import json
from pathlib import Path

import attrs
import pytorch_lightning as pl
import torch

from segrun import build
from segrun.atomic_write import write_atomically
from segrun.errors import UserError
from segrun.metrics import format_iou_table
from segrun.resolve import eval_precision
from segrun.run_folder import locate


def evaluate(run_or_checkpoint: Path, scales=None, flip: bool | None = None, sliding=None, progress: bool = True,
             out: Path | None = None) -> dict:
    """Validate the checkpoint with the run's spec, test-time options replaced where given; print
    the per-class table and write the scores to `out` (default: eval.json in the run folder).
    An existing file is never replaced."""
    folder, checkpoint = locate(run_or_checkpoint)
    eval_file = out or folder.path / "eval.json"
    if eval_file.exists():
        raise UserError(f"{eval_file}: already holds an evaluation; pass --out FILE to write this one elsewhere")
    spec = build.read_run_spec(folder)
    options = {key: value for key, value in {"scales": scales, "flip": flip, "sliding": sliding}.items() if value is not None}
    try:
        spec = attrs.evolve(spec, eval=attrs.evolve(spec.eval, **options))
    except ValueError as error:
        raise UserError(f"eval options: {error}") from None
    task = build.task(spec, load_weights=False)
    task.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"])
    trainer = pl.Trainer(accelerator=spec.trainer.accelerator, devices=1, precision=eval_precision(spec.trainer),
                         logger=False, enable_checkpointing=False, enable_progress_bar=progress,
                         enable_model_summary=False)
    trainer.validate(task, datamodule=build.datamodule(spec), verbose=False)
    result = {
        **task.last_val_scores,
        "scales": list(spec.eval.scales),
        "flip": spec.eval.flip,
        "sliding": list(spec.eval.sliding) if spec.eval.sliding else None,
        "checkpoint": str(checkpoint),
    }
    write_atomically(eval_file, (json.dumps(result, indent=2) + "\n").encode())
    print(format_iou_table(result))
    print(f"{eval_file}: mIoU {result['mIoU']:.4f}")
    return result
