"""`segrun bench`: the benchmarks in benchmarks/ (ops, training steps, data pipeline), their results
written as JSON and Markdown that never replace a file."""
import argparse
from pathlib import Path

from segrun import quiet
from segrun.commands import Command
from segrun.commands.arguments import window
from segrun.errors import UserError


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated worker counts such as 0,1,4, got {text!r}")
    return counts


def _op_names(text: str) -> tuple[str, ...]:
    from segrun.ops import OPS

    if text in ("all", "none"):
        return tuple(OPS) if text == "all" else ()
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in OPS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown op {unknown[0]!r}; known: all, none, {', '.join(OPS)}")
    return names


def _add_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, help="write the results as JSON (never replaces a file)")
    parser.add_argument("--md", type=Path, help="write the results as a Markdown table (never replaces a file)")


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda if available")


def _refuse_existing(*paths) -> None:
    for path in paths:
        if path is not None and path.exists():
            raise UserError(f"{path}: already exists; give another --json/--md/--plot path")


def _device(args: argparse.Namespace) -> str:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu)")
    return device


def _write_results(args: argparse.Namespace, result: dict, markdown) -> None:
    from benchmarks import write_results

    write_results(result, markdown, args.json, args.md)


def _say_written(*paths) -> None:
    for path in paths:
        if path is not None:
            print(f"{path}: written")


def _ops_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmarks.ops import SIZES

    _add_device(parser)
    parser.add_argument("--size", choices=list(SIZES), default="study")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions after warm-up (default 20)")
    parser.add_argument("--compile", type=_op_names, default="all", metavar="OPS",
                        help="ops measured under torch.compile too: all (default), none, or names, comma-separated")
    _add_outputs(parser)


def _ops(args: argparse.Namespace) -> None:
    quiet.install()
    from benchmarks import ops

    _refuse_existing(args.json, args.md)
    ops.run(_device(args), args.size, args.repeats, compile_peers=args.compile,
            after_case=lambda result: _write_results(args, result, ops.markdown))
    _say_written(args.json, args.md)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", type=Path, metavar="SPEC")
    _add_device(parser)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--losses", default=None, metavar="NAMES",
                        help="comma-separated losses put on every output, e.g. wce,rmi (default: the spec's)")
    parser.add_argument("--recipes", default="study,default", metavar="RECIPES",
                        help="comma-separated recipes (default: study,default)")
    parser.add_argument("--batch", type=int, default=6, help="images per step (default 6)")
    parser.add_argument("--crop", type=window, default=(512, 1024), metavar="HxW", help="default 512x1024")
    parser.add_argument("--inference-size", type=window, default=(1024, 2048), metavar="HxW",
                        help="image size for the inference timing (default 1024x2048)")
    parser.add_argument("--plot", type=Path, help="write the time-complexity figure as a PNG")
    _add_outputs(parser)


def _train(args: argparse.Namespace) -> None:
    quiet.install()
    from benchmarks import train

    _refuse_existing(args.json, args.md, args.plot)
    train.run_from_options(args.specs, _device(args), args.steps, args.warmup, args.losses, args.recipes, args.batch,
                           args.crop, args.inference_size, args.plot,
                           after_case=lambda result: _write_results(args, result, train.markdown))
    _say_written(args.json, args.md, args.plot)


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path)
    parser.add_argument("--workers", type=_counts, default=(0, 1, 2), metavar="N,N",
                        help="worker counts to measure, comma-separated (default 0,1,2)")
    parser.add_argument("--images", type=int, default=16, help="distinct scenes to write (default 16)")
    parser.add_argument("--samples", type=int, default=96, help="images drawn per measurement (default 96)")
    parser.add_argument("--size", type=window, default=(1024, 2048), metavar="HxW", help="default 1024x2048")
    _add_outputs(parser)


def _data(args: argparse.Namespace) -> None:
    quiet.install()
    from benchmarks import data
    from segrun import build

    _refuse_existing(args.json, args.md)
    build.load_spec(args.spec)
    _write_results(args, data.run(args.spec, args.workers, args.images, args.samples, args.size), data.markdown)
    _say_written(args.json, args.md)


def _suite_arguments(parser: argparse.ArgumentParser) -> None:
    _add_device(parser)
    parser.add_argument("--size", choices=["study", "tiny"], default="study",
                        help="study: the study's sizes, fitted to 9 minutes on an H100-class GPU (default); tiny: toy "
                             "sizes that run on a CPU")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="folder under which the suite's own folder <device>-<date>-suite is made "
                             "(default benchmarks/results)")


def _suite(args: argparse.Namespace) -> None:
    quiet.install()
    from benchmarks import suite

    try:
        suite.run(_device(args), args.size, args.out)
    except FileExistsError as error:
        raise UserError(str(error)) from None


BENCH = Command(
    help="measure the ops and training steps (benchmarks/)",
    description="Measure; speed claims in the documentation (docs/performance.md) come only from these.", metavar="WHAT", subcommands={
        "ops": Command(
            help="each op's kernel vs its fallback and peers",
            description="Each op's compiled kernel against its PyTorch fallback, torchmetrics / the original RMI / "
                        "eager interpolation, and torch.compile, at the study's sizes: median time, floor, bandwidth, "
                        "peak extra memory, speedups.",
            arguments=_ops_arguments, handler=_ops),
        "train": Command(
            help="training steps, peak memory and inference time per model, loss and recipe",
            description="For each spec's model, each --losses entry and each --recipes entry, on synthetic batches: "
                        "ms per training step, images/s, peak GPU memory, inference ms per image (the spec's [eval] "
                        "scales for MS OCR) and parameters. Recipes: study (16-mixed, contiguous, kernels off), "
                        "default (auto precision and memory format, kernels on), or PRECISION/FORMAT/on|off.",
            arguments=_train_arguments, handler=_train),
        "data": Command(
            help="images per second the spec's training pipeline delivers, per worker count",
            description="Write full-size synthetic scenes in the dataset's layout to a temporary folder, then time "
                        "the spec's training pipeline (decode, transforms, collate) with each worker count.",
            arguments=_data_arguments, handler=_data),
        "suite": Command(
            help="every GPU measurement in one call: build, CUDA tests, ops, train, data",
            description="Build the kernels, run the CUDA kernel tests, bench ops, bench train (the four study models "
                        "x study and default recipes x wCE and RMI, and the same with the kernels off) and bench data "
                        "(skipped without albumentations), writing each section's results, a log and each "
                        "section's seconds into OUT/<device>-<date>-suite/.",
            arguments=_suite_arguments, handler=_suite),
    })
