"""`segrun chain`: the stages of a chain spec, each starting from the previous one's checkpoint."""
import argparse
from pathlib import Path

from segrun.commands import Command
from segrun.commands.arguments import add_runs


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("chain", type=Path, help="the chain spec (TOML)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="change a key of every stage's spec, after the stage's own overrides: seed=1 "
                             "data.num_workers=4")
    parser.add_argument("--dry-run", action="store_true", help="print the stages, their resolved specs and which are done")
    parser.add_argument("--up-to", metavar="STAGE", help="run the stages through this one (a name or number) and stop")
    parser.add_argument("--force", action="store_true", help="train every stage again, into new folders")
    parser.add_argument("--smoke", action="store_true",
                        help="try the chain small on this machine: each stage as `segrun SPEC --smoke` would run it")
    add_runs(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _chain(args: argparse.Namespace) -> None:
    from segrun.chain import run_chain

    run_chain(args.chain, args.runs, dry_run=args.dry_run, progress=not args.no_progress, overrides=args.overrides,
              up_to=args.up_to, smoke=args.smoke, force=args.force)


CHAIN = Command(
    help="run the stages of a chain spec in order",
    description="Run the [[stage]] tables of a chain spec in order, each starting from the previous stage's best "
                "(or last) checkpoint. Finished stages are skipped and an interrupted one resumes.",
    arguments=_arguments, handler=_chain)
