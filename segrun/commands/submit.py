"""`segrun submit`: a spec, a chain, a sweep or the study's rows x seeds sent to SLURM (segrun.submission)."""
import argparse
from pathlib import Path

from segrun.commands import Command
from segrun.commands.arguments import add_runs


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", help="the spec or chain (*_chain.toml) to train; leave out with --study")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="change a key of the spec (of every stage)")
    parser.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                        help="one member per value (repeat for a cartesian product)")
    parser.add_argument("--seeds", type=int, metavar="N", help="repeat every member with seed=0..N-1 (--study: 3)")
    parser.add_argument("--study", type=Path, metavar="MANIFEST",
                        help="submit the published rows of a manifest (specs/study/results.toml) instead of a spec")
    parser.add_argument("--rows", action="append", default=[], metavar="PATTERN",
                        help="with --study: the rows whose spec file, table or label matches (shell wildcards; "
                             "repeat for more); default every row")
    add_runs(parser)
    parser.add_argument("--print", action="store_true", help="print each member's command instead of submitting")
    parser.add_argument("--cluster", type=Path, metavar="FILE",
                        help="a TOML file with a [cluster] table of the options below (flags replace its keys)")
    resources = parser.add_argument_group("what each job asks SLURM for (nodes, tasks and GPUs come from the spec's "
                                          "[trainer] num_nodes, devices and accelerator)")
    resources.add_argument("--partition")
    resources.add_argument("--account")
    resources.add_argument("--qos")
    resources.add_argument("--time", help="time limit per job, e.g. 24:00:00 (default); a longer run is requeued "
                                          "at the limit and resumes")
    resources.add_argument("--cpus-per-task", type=int, help="default: the spec's data.num_workers + 1")
    resources.add_argument("--mem", help="memory per node, e.g. 64G")
    resources.add_argument("--constraint")
    resources.add_argument("--array-parallelism", type=int, help="members of one array that run at once (256)")


def _submit(args: argparse.Namespace) -> None:
    from segrun.errors import UserError
    from segrun.submission import (
        jobs_folder,
        load_cluster_options,
        print_plan,
        study_plan,
        submit,
        sweep_plan,
    )

    if (args.study is None) == (args.spec is None):
        raise UserError("submit: give a spec (or chain) to train, or --study MANIFEST, not both")
    if args.study is not None:
        if args.overrides or args.sweep:
            raise UserError("submit --study: the rows' specs are the study's; KEY=VALUE and --sweep go with a spec")
        plan, finished = study_plan(args.study, args.rows, 3 if args.seeds is None else args.seeds, args.runs)
    else:
        if args.rows:
            raise UserError("submit: --rows selects rows of --study MANIFEST")
        plan, finished = sweep_plan(Path(args.spec), args.overrides, args.sweep, args.seeds, args.runs)
    for folder in finished:
        print(f"finished, not submitted: {folder}")
    if not plan:
        print("nothing to submit: every member has finished")
        return
    if args.print:
        print("\n".join(print_plan(plan)))
        return
    flags = {"partition": args.partition, "account": args.account, "qos": args.qos, "time": args.time,
             "cpus_per_task": args.cpus_per_task, "mem": args.mem, "constraint": args.constraint,
             "array_parallelism": args.array_parallelism}
    lines = submit(plan, load_cluster_options(args.cluster, flags), jobs_folder(args.runs))
    print("\n".join(lines))
    print(f"{len(lines)} jobs submitted; their logs: {jobs_folder(args.runs).parent}/<job>/; runs: {args.runs}/")


SUBMIT = Command(
    help="send a spec, chain, sweep or the study's rows x seeds to SLURM",
    description="Submit runs to SLURM through submitit: one run folder per member, members that finished are "
                "skipped, members as job arrays and chain stages as dependent jobs. Preempted or timed-out jobs "
                "stop at a step boundary, are requeued and resume.",
    arguments=_arguments, handler=_submit)
