"""`segrun eval`: a trained run scored on the val split."""
import argparse
from pathlib import Path

from segrun.commands import Command
from segrun.commands.arguments import scales, window


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, metavar="RUN_OR_CKPT")
    parser.add_argument("--scales", type=scales, help="comma-separated image scales, e.g. 0.5,1.0,2.0")
    parser.add_argument("--flip", action="store_true", default=None, help="average with the left-right flipped image")
    parser.add_argument("--sliding", type=window, metavar="HxW", help="sliding-window inference with this window")
    parser.add_argument("--out", type=Path, help="where to write the scores (default: RUN/eval.json; never replaced)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _eval(args: argparse.Namespace) -> None:
    from segrun.evaluation import evaluate

    evaluate(args.run, progress=not args.no_progress, out=args.out, scales=args.scales, flip=args.flip,
             sliding=args.sliding)


EVAL = Command(
    help="evaluate a trained run on the val split",
    description="Evaluate a run folder's best (else last) checkpoint, or a given checkpoint, on the val split; "
                "print per-class IoU and write eval.json. Options not given come from the run's [eval].",
    arguments=_arguments, handler=_eval)
