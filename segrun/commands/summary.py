"""`segrun summary`: parameters, multiply-accumulates and outputs of a spec's model."""
import argparse

from segrun.commands import Command
from segrun.commands.arguments import add_spec, window


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_spec(parser)
    parser.add_argument("--size", type=window, metavar="HxW", help="input size (default: the train crop)")


def _summary(args: argparse.Namespace) -> None:
    from segrun import build
    from segrun.summary import summarize

    print(summarize(build.load_spec(args.spec, args.overrides), args.size))


SUMMARY = Command(
    help="parameters, MACs and outputs of a spec's model",
    description="Print parameters, multiply-accumulates at the spec's crop size (or --size) and the names of the "
                "model's outputs.",
    arguments=_arguments, handler=_summary)
