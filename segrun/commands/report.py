"""`segrun report`: finished runs compared in one table, seeds of one setting pooled."""
import argparse
from pathlib import Path

from segrun.commands import Command


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR_OR_GLOB",
                        help="run folders (or folders of them, or globs); with --published, evaluation files")
    parser.add_argument("--csv", type=Path, help="write one row per run, per-class IoU included")
    parser.add_argument("--plot", type=Path, help="write mIoU with error bars and training curves as a PNG (with "
                        "--study, also PLOT-study.png: published means beside reproduced ones)")
    parser.add_argument("--study", type=Path, metavar="MANIFEST",
                        help="also compare the runs with published numbers, e.g. specs/study/results.toml")
    parser.add_argument("--published", type=Path, metavar="MANIFEST",
                        help="compare evaluations of released checkpoints (`segrun eval FILE --spec SPEC` writes them) "
                             "with their upstreams' numbers, e.g. specs/published/checkpoints.toml")


def _report(args: argparse.Namespace) -> None:
    from segrun.report import (
        format_study_table,
        format_table,
        group_rows,
        load_results,
        study_rows,
        write_csv,
        write_plot,
        write_study_plot,
    )

    if args.published is not None:
        from segrun.report import format_published_table, published_rows

        print(format_published_table(published_rows(args.published, args.runs)))
        return
    results = load_results(args.runs)
    rows = group_rows(results)
    print(format_table(rows))
    published = study_rows(args.study, results) if args.study else None
    if published is not None:
        print()
        print(format_study_table(published))
    if args.csv:
        write_csv(results, args.csv)
        print(f"{args.csv}: {len(results)} runs")
    if args.plot:
        without_curve = write_plot(results, rows, args.plot)
        print(f"{args.plot}: mIoU and training curves")
        for folder in without_curve:
            print(f"{folder}: no training-loss log (logs/csv/*/metrics.csv), so no curve in {args.plot}")
        if published is not None:
            study_plot = args.plot.with_name(f"{args.plot.stem}-study{args.plot.suffix}")
            write_study_plot(published, study_plot)
            print(f"{study_plot}: published means beside reproduced ones")


REPORT = Command(
    help="compare finished runs side by side",
    description="One table of finished runs (folders, or globs, or folders holding run folders); runs whose specs "
                "differ only in seed are one setting, shown as mean ± standard deviation.",
    arguments=_arguments, handler=_report)
