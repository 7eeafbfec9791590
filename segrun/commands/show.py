"""`segrun show` and `segrun validate`: a spec printed as resolved, or checked without training."""
import argparse

from segrun.commands import Command
from segrun.commands.arguments import add_spec


def _show(args: argparse.Namespace) -> None:
    from segrun import build, spec

    print(spec.dumps(build.load_spec(args.spec, args.overrides)), end="")


def _validate(args: argparse.Namespace) -> None:
    from segrun.validation import validate

    for line in validate(args.spec, args.overrides, read_data=args.data, progress=not args.no_progress,
                         smoke=args.smoke):
        print(line, flush=True)


def _validate_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec(parser)
    parser.add_argument("--data", action="store_true",
                        help="also open every image and label of the train and val splits and check their sizes and "
                             "label values, listing every bad file (reads the whole dataset)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--smoke", action="store_true", help="check the spec's smoke run (see `segrun train --smoke`)")


SHOW = Command(
    help="print the resolved spec as TOML",
    description="Print the spec after extends and overrides, every default spelled out.",
    arguments=add_spec, handler=_show)

VALIDATE = Command(
    help="check a spec (or each stage of a chain) and its dataset without training",
    description="Load the spec, build its pipelines, check that this machine has the devices it asks for, open "
                "model.pretrained and init and match them to the model, and check that the dataset is there; with "
                "--data, read and check every file of it. A chain (*_chain.toml) has each stage checked.",
    arguments=_validate_arguments, handler=_validate)
