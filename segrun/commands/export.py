"""`segrun export`: a trained model as an ONNX model or a torch.export program, for deployment."""
import argparse
from pathlib import Path

from segrun.commands import Command
from segrun.commands.arguments import scales


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, metavar="RUN_OR_CKPT_OR_WEIGHTS")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="with --spec: overrides of that spec")
    parser.add_argument("--out", type=Path, required=True, help="the file to write (model.onnx, model.pt2)")
    parser.add_argument("--format", choices=["onnx", "pt2"], default="onnx",
                        help="onnx (needs pip install -e \".[export]\") or pt2 (torch.export.save; load with "
                             "torch.export.load)")
    parser.add_argument("--spec", type=Path, help="the spec of a weights file outside a run folder")
    parser.add_argument("--scales", type=scales, help="comma-separated image scales (default: the run's protocol)")
    parser.add_argument("--flip", action="store_true", default=None, help="average with the flipped image")


def _export(args: argparse.Namespace) -> None:
    from segrun.errors import UserError
    from segrun.export import export

    if args.overrides and args.spec is None:
        raise UserError(f"{' '.join(args.overrides)}: KEY=VALUE overrides apply to --spec SPEC; a run folder's "
                        "spec is fixed")
    options = {key: value for key, value in (("scales", args.scales), ("flip", args.flip)) if value is not None}
    export(args.run, args.out, args.format, args.spec, args.overrides, **options)


EXPORT = Command(
    help="export a trained model to ONNX or torch.export",
    description="Export what segrun.load predicts (the run's [test] protocol, else its [eval] options, without "
                "sliding windows) with the spec's normalisation inside: float32 RGB images [N, 3, H, W] with values "
                "0-255, any size, in; labels (int64 train ids [N, H, W]) and scores [N, classes, H, W] out.",
    arguments=_arguments, handler=_export)
