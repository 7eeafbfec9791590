"""The segrun command line: the commands (segrun.commands, one module per group) and their dispatch.
How a command ends, its one line and exit status, is segrun.exits's."""
import argparse
import sys
from collections.abc import Sequence

from segrun.commands import (
    bench,
    chain,
    data,
    doctor,
    evaluate,
    export,
    predict,
    report,
    show,
    submit,
    summary,
    train,
)
from segrun.exits import import_problem, run_as_command

# The commands in the order `segrun --help` lists them.
COMMANDS = {
    "train": train.TRAIN,
    "chain": chain.CHAIN,
    "submit": submit.SUBMIT,
    "show": show.SHOW,
    "validate": show.VALIDATE,
    "eval": evaluate.EVAL,
    "report": report.REPORT,
    "predict": predict.PREDICT,
    "export": export.EXPORT,
    "summary": summary.SUMMARY,
    "data": data.DATA,
    "doctor": doctor.DOCTOR,
    "bench": bench.BENCH,
}


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser of `segrun`; only the commands that argv names get their arguments (Command.add_to)."""
    top = argparse.ArgumentParser(
        prog="segrun", description="Train and evaluate semantic-segmentation experiments from TOML specs.",
        epilog="`segrun SPEC [KEY=VALUE ...]` is short for `segrun train SPEC ...`.")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_to(commands, name, argv)
    return top


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "train")
    command_parser = _parser(argv)
    args = command_parser.parse_args(argv)
    if args.command is None:
        command_parser.print_help()
        return 2
    problem = import_problem()
    if problem is not None:
        print(f"segrun: error: {problem}", file=sys.stderr)
        return 2
    return run_as_command(args.handler, args)



if __name__ == "__main__":
    sys.exit(main())
