"""`segrun train` (the default command): a spec trained in its run folder, or a sweep over its keys and seeds."""
import argparse

from segrun.commands import Command
from segrun.commands.arguments import add_runs, add_spec


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_spec(parser)
    add_runs(parser)
    parser.add_argument("--force", action="store_true", help="train again into a new folder even if this spec finished")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                        help="train one run per value (repeat for a cartesian product), e.g. trainer.epochs=150,200")
    parser.add_argument("--seeds", type=int, metavar="N", help="repeat every member with seed=0..N-1")
    parser.add_argument("--print", action="store_true", help="print each member's command instead of training")
    parser.add_argument("--smoke", action="store_true",
                        help="try the spec small on this machine: its recipe at 1/8 of its image sizes on synthetic "
                             "data, the model's smallest backbone (HRNet-W18-small for the study's) from scratch, "
                             "4 steps, this machine's devices, into RUNS/smoke/")


def _train(args: argparse.Namespace) -> None:
    from segrun import build, runner
    from segrun.errors import UserError
    from segrun.smoke import smoke_runs, smoke_spec
    from segrun.sweep import command_line, sweep_members

    load = smoke_spec if args.smoke else build.load_spec
    runs = smoke_runs(args.runs) if args.smoke else args.runs
    if not args.sweep and args.seeds is None and not args.print:
        runner.train(load(args.spec, args.overrides), runs, args.force, progress=not args.no_progress)
        return
    members = sweep_members(args.overrides, args.sweep, args.seeds)
    specs = []  # every member is checked before any trains
    for number, overrides in enumerate(members, start=1):
        try:
            specs.append(load(args.spec, overrides))
        except UserError as error:
            raise UserError(f"sweep member {number} of {len(members)} ({' '.join(overrides)}): {error}") from None
    if args.print:
        print("\n".join(command_line(args.spec, overrides, args.runs, args.smoke) for overrides in members))
        return
    for number, (overrides, member) in enumerate(zip(members, specs), start=1):
        print(f"sweep member {number} of {len(members)}: {' '.join(overrides)}")
        runner.train(member, runs, args.force, progress=not args.no_progress)


TRAIN = Command(
    help="train and validate a spec in its run folder (the default command)",
    description="Train and validate a spec in runs/<name>-<spec hash>/. A finished run is not trained again; "
                "an interrupted one resumes from its last checkpoint.",
    arguments=_arguments, handler=_train)
