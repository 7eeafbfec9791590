"""`segrun show` and `segrun validate`: a spec printed as resolved, or checked without training."""
import argparse

from segrun.commands import Command
from segrun.commands.arguments import add_spec


def _show(args: argparse.Namespace) -> None:
    from segrun import build, spec

    print(spec.dumps(build.load_spec(args.spec, args.overrides)), end="")


def _validate(args: argparse.Namespace) -> None:
    from segrun.validation import validate

    for line in validate(args.spec, args.overrides):
        print(line)


SHOW = Command(
    help="print the resolved spec as TOML",
    description="Print the spec after extends and overrides, every default spelled out.",
    arguments=add_spec, handler=_show)

VALIDATE = Command(
    help="check a spec and its dataset without training",
    description="Load the spec, build its pipelines, and check that the dataset is there.",
    arguments=add_spec, handler=_validate)
