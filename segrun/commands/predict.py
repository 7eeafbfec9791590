"""`segrun predict`: a trained run's (or a weights file's, with a spec) predictions for images,
written as overlays or label PNGs."""
import argparse
from pathlib import Path

from segrun.commands import Command
from segrun.commands.arguments import scales


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, metavar="RUN_OR_WEIGHTS",
                        help="a run folder, a checkpoint inside one, or (with --spec) a weights file")
    parser.add_argument("inputs", type=Path, nargs="+", metavar="IMAGES_OR_DIR")
    parser.add_argument("--spec", nargs="+", metavar=("SPEC", "KEY=VALUE"),
                        help="predict with a weights file (a study or HRNet-Semantic-Segmentation checkpoint, a "
                             "segrun .ckpt) and this spec's model, dataset and protocol, its keys changed by KEY=VALUE")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--format", choices=["color", "trainid", "cityscapes"], default="color")
    parser.add_argument("--scales", type=scales, help="comma-separated image scales (default: the run's [test], else its [eval])")
    parser.add_argument("--flip", action="store_true", default=None, help="average with the flipped image")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar for large images")


def _predict(args: argparse.Namespace) -> None:
    from segrun.prediction import predict_files

    spec_file, *overrides = args.spec or [None]
    predict_files(args.run, args.inputs, args.out, args.format, args.scales, args.flip, not args.no_progress,
                  None if spec_file is None else Path(spec_file), overrides)


PREDICT = Command(
    help="write predictions for images",
    description="Predict images with a trained run (or, with --spec, a weights file) and write colour overlays, trainId PNGs, or Cityscapes "
                "submission PNGs (official labelIds, named like the input). Unreadable images are reported and "
                "skipped. Images above 2048x2048 pixels are predicted in sliding windows (the run's [eval] sliding, "
                "else 1024x1024) at scale 1.0, holding one row of windows' scores at a time.",
    arguments=_arguments, handler=_predict)
