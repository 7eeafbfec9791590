"""`segrun eval`: a trained run, or a weights file with a spec, scored on the val split."""
import argparse
from pathlib import Path

from segrun.commands import Command
from segrun.commands.arguments import scales, window


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, metavar="RUN_OR_WEIGHTS",
                        help="a run folder, a checkpoint inside one, or (with --spec) a weights file")
    parser.add_argument("--spec", nargs="+", metavar=("SPEC", "KEY=VALUE"),
                        help="evaluate a weights file (a study or HRNet-Semantic-Segmentation checkpoint, a segrun "
                             ".ckpt) with this spec's model, dataset and protocol, its keys changed by KEY=VALUE")
    parser.add_argument("--scales", type=scales, help="comma-separated image scales, e.g. 0.5,1.0,2.0")
    parser.add_argument("--flip", action="store_true", default=None, help="average with the left-right flipped image")
    parser.add_argument("--sliding", type=window, metavar="HxW", help="sliding-window inference with this window")
    parser.add_argument("--combine", choices=("mean_probabilities", "sum_logits"),
                        help="combine the scales by their mean probabilities or summed logits")
    parser.add_argument("--model-scales", type=scales, metavar="SCALES",
                        help="hrnet_ocr_ms: the scales its attention fuses inside each of --scales, e.g. 0.5,1.0,2.0")
    parser.add_argument("--out", type=Path, help="where to write the scores (default: RUN/eval.json, or "
                                                 "./WEIGHTS-STEM.eval.json with --spec; never replaced)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _eval(args: argparse.Namespace) -> None:
    from segrun.evaluation import evaluate, evaluate_weights

    options = {"progress": not args.no_progress, "out": args.out, "scales": args.scales, "flip": args.flip,
               "sliding": args.sliding, "combine": args.combine, "model_scales": args.model_scales}
    if args.spec is None:
        evaluate(args.run, **options)
    else:
        spec_file, *overrides = args.spec
        evaluate_weights(args.run, Path(spec_file), overrides, **options)


EVAL = Command(
    help="evaluate a trained run, or a weights file with a spec, on the val split",
    description="Evaluate a run folder's best (else last) checkpoint, or a given checkpoint, on the val split; "
                "print per-class IoU and write eval.json. Options not given come from the run's [test], else its "
                "[eval]. With --spec, evaluate a weights file in any layout segrun reads (see docs/models.md, "
                "checkpoint layouts) with that spec instead of a run's.",
    arguments=_arguments, handler=_eval)
