"""Arguments and argument types that several commands share."""
import argparse
import os
from pathlib import Path


def add_spec(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the experiment spec (TOML)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="change a key of the spec, value in TOML syntax: trainer.epochs=400 model.name=hrnet")


def add_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, default=Path(os.environ.get("SEGRUN_RUNS", "runs")),
                        help="folder that holds the run folders (default: $SEGRUN_RUNS or ./runs)")


def scales(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,1.0,2.0, got {text!r}") from None


def window(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 1024x1024, got {text!r}")
    return int(height), int(width)
