"""The segrun command line. User errors print one line and exit with status 2."""
import argparse
import os
import sys
from pathlib import Path

from segrun.errors import UserError

COMMANDS = ("train", "chain", "show", "validate", "eval", "predict", "report", "summary", "data", "doctor", "bench")


def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the experiment spec (TOML)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="change a key of the spec, value in TOML syntax: trainer.epochs=400 model.name=hrnet")


def _scales(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,1.0,2.0, got {text!r}") from None


def _window(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 1024x1024, got {text!r}")
    return int(height), int(width)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segrun", description="Train and evaluate semantic-segmentation experiments from TOML specs.",
        epilog="`segrun SPEC [KEY=VALUE ...]` is short for `segrun train SPEC ...`.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="train and validate a spec in its run folder (the default command)",
                                description="Train and validate a spec in runs/<name>-<spec hash>/. A finished run "
                                            "is not trained again; an interrupted one resumes from its last checkpoint.")
    _spec_arguments(train)
    train.add_argument("--runs", type=Path, default=Path(os.environ.get("SEGRUN_RUNS", "runs")),
                       help="folder that holds the run folders (default: $SEGRUN_RUNS or ./runs)")
    train.add_argument("--force", action="store_true", help="train again into a new folder even if this spec finished")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                       help="train one run per value (repeat for a cartesian product), e.g. trainer.epochs=150,200")
    train.add_argument("--seeds", type=int, metavar="N", help="repeat every member with seed=0..N-1")
    train.add_argument("--print", action="store_true", help="print each member's command instead of training")

    chain = commands.add_parser("chain", help="run the stages of a chain spec in order",
                                description="Run the [[stage]] tables of a chain spec in order, each starting from "
                                            "the previous stage's best (or last) checkpoint. Finished stages are "
                                            "skipped and an interrupted one resumes.")
    chain.add_argument("chain", type=Path, help="the chain spec (TOML)")
    chain.add_argument("--dry-run", action="store_true", help="print the stages, their resolved specs and which are done")
    chain.add_argument("--runs", type=Path, default=Path(os.environ.get("SEGRUN_RUNS", "runs")),
                       help="folder that holds the run folders (default: $SEGRUN_RUNS or ./runs)")
    chain.add_argument("--no-progress", action="store_true", help="no progress bars")

    show = commands.add_parser("show", help="print the resolved spec as TOML",
                               description="Print the spec after extends and overrides, every default spelled out.")
    _spec_arguments(show)

    validate = commands.add_parser("validate", help="check a spec and its dataset without training",
                                   description="Load the spec, build its pipelines, and check that the dataset is there.")
    _spec_arguments(validate)

    evaluate = commands.add_parser("eval", help="evaluate a trained run on the val split",
                                   description="Evaluate a run folder's best (else last) checkpoint, or a given "
                                               "checkpoint, on the val split; print per-class IoU and write eval.json. "
                                               "Options not given come from the run's [eval].")
    evaluate.add_argument("run", type=Path, metavar="RUN_OR_CKPT")
    evaluate.add_argument("--scales", type=_scales, help="comma-separated image scales, e.g. 0.5,1.0,2.0")
    evaluate.add_argument("--flip", action="store_true", default=None, help="average with the left-right flipped image")
    evaluate.add_argument("--sliding", type=_window, metavar="HxW", help="sliding-window inference with this window")
    evaluate.add_argument("--out", type=Path, help="where to write the scores (default: RUN/eval.json; never replaced)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")

    report = commands.add_parser("report", help="compare finished runs side by side",
                                 description="One table of finished runs (folders, or globs, or folders holding "
                                             "run folders); runs whose specs differ only in seed are one setting, "
                                             "shown as mean ± standard deviation.")
    report.add_argument("runs", nargs="+", metavar="RUN_DIR_OR_GLOB")
    report.add_argument("--csv", type=Path, help="write one row per run, per-class IoU included")
    report.add_argument("--plot", type=Path, help="write mIoU with error bars and training curves as a PNG")

    predict = commands.add_parser("predict", help="write predictions for images",
                                  description="Predict images with a trained run and write colour overlays, trainId "
                                              "PNGs, or Cityscapes submission PNGs (official labelIds, named like the "
                                              "input). Unreadable images are reported and skipped.")
    predict.add_argument("run", type=Path, metavar="RUN_OR_CKPT")
    predict.add_argument("inputs", type=Path, nargs="+", metavar="IMAGES_OR_DIR")
    predict.add_argument("--out", type=Path, required=True, help="output folder")
    predict.add_argument("--format", choices=["color", "trainid", "cityscapes"], default="color")
    predict.add_argument("--scales", type=_scales, help="comma-separated image scales (default: the run's [eval])")
    predict.add_argument("--flip", action="store_true", default=None, help="average with the flipped image")

    summary = commands.add_parser("summary", help="parameters, MACs and outputs of a spec's model",
                                  description="Print parameters, multiply-accumulates at the spec's crop size "
                                              "(or --size) and the names of the model's outputs.")
    _spec_arguments(summary)
    summary.add_argument("--size", type=_window, metavar="HxW", help="input size (default: the train crop)")

    data = commands.add_parser("data", help="make or prepare datasets", description="Make or prepare datasets.")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = data_commands.add_parser("synth", help="write a synthetic dataset in a published layout",
                                     description="Write synthetic data in a download's exact layout: cityscapes (fine "
                                                 "labelIds), cityscapes-coarse (fine plus train_extra with gtCoarse), "
                                                 "pascal-context (VOC2010 devkit and trainval/*.mat). Run `segrun data "
                                                 "prepare` next. Existing files are kept.")
    synth.add_argument("dataset", choices=["cityscapes", "cityscapes-coarse", "pascal-context"])
    synth.add_argument("root", type=Path)
    synth.add_argument("--train-images", type=int, default=80)
    synth.add_argument("--val-images", type=int, default=20)
    synth.add_argument("--height", type=int, default=128)
    synth.add_argument("--width", type=int, default=256)
    synth.add_argument("--seed", type=int, default=0)
    prepare = data_commands.add_parser("prepare", help="convert a downloaded dataset into what training reads",
                                       description="cityscapes: write *_labelTrainIds.png beside each gtFine and gtCoarse "
                                                   "*_labelIds.png (official labelId -> trainId table). pascal-context: write "
                                                   "Images/{train,val}/*.jpg and Annotations/{train,val}/*.png with the 60 "
                                                   "classes. Idempotent; safe to interrupt; the downloads are only read.")
    prepare.add_argument("dataset", choices=["cityscapes", "pascal-context"])
    prepare.add_argument("root", type=Path)

    weights = data_commands.add_parser("weights", help="per-class loss weights from the training labels",
                                       description="Count the pixels of each class in the spec's training labels "
                                                   "and print class weights (mean 1) as a TOML line for [[loss]].")
    _spec_arguments(weights)
    weights.add_argument("--method", choices=["enet", "inverse", "median"], default="enet",
                         help="enet: 1/ln(1.02+p) (default); inverse: 1/p; median: median frequency balancing")

    stats = data_commands.add_parser("stats", help="image counts, sizes and class frequencies of a spec's dataset",
                                     description="For the train and val splits of the spec's dataset: image count, "
                                                 "size distribution and the share of labelled pixels of each class.")
    _spec_arguments(stats)
    show_data = data_commands.add_parser("show", help="render augmented samples beside their labels to a PNG",
                                         description="Render samples after the spec's pipeline (Normalize left out), "
                                                     "each image beside its labels in the dataset's palette.")
    _spec_arguments(show_data)
    show_data.add_argument("--split", choices=["train", "val"], default="train")
    show_data.add_argument("--n", type=int, default=8, help="how many samples (default 8)")
    show_data.add_argument("--out", type=Path, required=True, help="PNG file to write")

    commands.add_parser("doctor", help="show torch, CUDA, devices, op backends and datasets found",
                        description="Show torch, CUDA, devices, which backend each op uses and why, and datasets found.")

    bench = commands.add_parser("bench", help="measure the ops and training steps (benchmarks/)",
                                description="Measure; speed claims in the README come only from these.")
    bench_commands = bench.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    bench_ops = bench_commands.add_parser("ops", help="each op's kernel vs its fallback and peers",
                                          description="Each op's compiled kernel against its PyTorch fallback, "
                                                      "torchmetrics / the original RMI / eager interpolation, and "
                                                      "torch.compile, at the study's sizes: median time, floor, "
                                                      "bandwidth, peak extra memory, speedups.")
    bench_ops.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda if available")
    bench_ops.add_argument("--size", choices=["study", "tiny"], default="study")
    bench_ops.add_argument("--repeats", type=int, default=20, help="timed repetitions after warm-up (default 20)")
    bench_ops.add_argument("--compile", type=_op_names, default="all", metavar="OPS",
                           help="ops measured under torch.compile too: all (default), none, or names, comma-separated")
    _bench_outputs(bench_ops)
    bench_train = bench_commands.add_parser(
        "train", help="training steps, peak memory and inference time per model, loss and recipe",
        description="For each spec's model, each --losses entry and each --recipes entry, on synthetic batches: "
                    "ms per training step, images/s, peak GPU memory, inference ms per image (the spec's "
                    "[eval] scales for MS OCR) and parameters. Recipes: study (16-mixed, contiguous, kernels off), "
                    "default (auto precision and memory format, kernels on), or PRECISION/FORMAT/on|off.")
    bench_train.add_argument("specs", nargs="+", type=Path, metavar="SPEC")
    bench_train.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda if available")
    bench_train.add_argument("--steps", type=int, default=20, help="timed training steps (default 20)")
    bench_train.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    bench_train.add_argument("--losses", default=None, metavar="NAMES",
                             help="comma-separated losses put on every output, e.g. wce,rmi (default: the spec's)")
    bench_train.add_argument("--recipes", default="study,default", metavar="RECIPES",
                             help="comma-separated recipes (default: study,default)")
    bench_train.add_argument("--batch", type=int, default=6, help="images per step (default 6)")
    bench_train.add_argument("--crop", type=_window, default=(512, 1024), metavar="HxW", help="default 512x1024")
    bench_train.add_argument("--inference-size", type=_window, default=(1024, 2048), metavar="HxW",
                             help="image size for the inference timing (default 1024x2048)")
    bench_train.add_argument("--plot", type=Path, help="write the time-complexity figure as a PNG")
    _bench_outputs(bench_train)
    bench_data = bench_commands.add_parser(
        "data", help="images per second the spec's training pipeline delivers, per worker count",
        description="Write full-size synthetic scenes in the dataset's layout to a temporary folder, then time "
                    "the spec's training pipeline (decode, transforms, collate) with each worker count.")
    bench_data.add_argument("spec", type=Path)
    bench_data.add_argument("--workers", type=_counts, default=(0, 1, 2), metavar="N,N",
                            help="worker counts to measure, comma-separated (default 0,1,2)")
    bench_data.add_argument("--images", type=int, default=16, help="distinct scenes to write (default 16)")
    bench_data.add_argument("--samples", type=int, default=96, help="images drawn per measurement (default 96)")
    bench_data.add_argument("--size", type=_window, default=(1024, 2048), metavar="HxW", help="default 1024x2048")
    _bench_outputs(bench_data)
    return parser


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


def _bench_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, help="write the results as JSON (never replaces a file)")
    parser.add_argument("--md", type=Path, help="write the results as a Markdown table (never replaces a file)")


def _train(args) -> None:
    from segrun import build, runner
    from segrun.sweep import command_line, sweep_members

    if not args.sweep and args.seeds is None and not args.print:
        runner.train(build.load_spec(args.spec, args.overrides), args.runs, args.force, progress=not args.no_progress)
        return
    members = sweep_members(args.overrides, args.sweep, args.seeds)
    specs = [build.load_spec(args.spec, overrides) for overrides in members]  # every member is checked before any trains
    if args.print:
        print("\n".join(command_line(args.spec, overrides, args.runs) for overrides in members))
        return
    for number, (overrides, member) in enumerate(zip(members, specs), start=1):
        print(f"sweep member {number} of {len(members)}: {' '.join(overrides)}")
        runner.train(member, args.runs, args.force, progress=not args.no_progress)


def _chain(args) -> None:
    from segrun.chain import run_chain

    run_chain(args.chain, args.runs, dry_run=args.dry_run, progress=not args.no_progress)


def _show(args) -> None:
    from segrun import build, spec

    print(spec.dumps(build.load_spec(args.spec, args.overrides)), end="")


def _validate(args) -> None:
    from segrun import build
    from segrun.data import DATASETS, resolve_root

    loaded = build.load_spec(args.spec, args.overrides)
    root = resolve_root(loaded.data.root)
    dataset = DATASETS[loaded.data.dataset]
    print(f"{args.spec}: spec ok ({loaded.model.name}/{loaded.model.backbone}, "
          f"losses {', '.join(loss.name for loss in loaded.loss)})")
    for key, path in (("model.pretrained", loaded.model.pretrained), ("init", loaded.init)):
        if path is not None and not Path(path).exists():
            raise UserError(f"{args.spec}: {key}: no such file {path}")
    if loaded.data.synthetic is not None and not root.exists():
        print(f"{root}: not there yet; the run will synthesise it ([data.synthetic])")
        return
    counts = {split: len(dataset(root, split)) for split in ("train", "val")}
    print(f"{root}: {loaded.data.dataset} with {counts['train']} train and {counts['val']} val images, labels prepared")


def _eval(args) -> None:
    from segrun.evaluation import evaluate

    evaluate(args.run, progress=not args.no_progress, out=args.out, scales=args.scales, flip=args.flip, sliding=args.sliding)


def _report(args) -> None:
    from segrun.report import (
        format_table,
        group_rows,
        load_results,
        write_csv,
        write_plot,
    )

    results = load_results(args.runs)
    rows = group_rows(results)
    print(format_table(rows))
    if args.csv:
        write_csv(results, args.csv)
        print(f"{args.csv}: {len(results)} runs")
    if args.plot:
        write_plot(results, rows, args.plot)
        print(f"{args.plot}: mIoU and training curves")


def _predict(args) -> None:
    from segrun.prediction import predict_files

    predict_files(args.run, args.inputs, args.out, args.format, args.scales, args.flip)


def _summary(args) -> None:
    from segrun import build
    from segrun.summary import summarize

    print(summarize(build.load_spec(args.spec, args.overrides), args.size))


def _data(args) -> None:
    from segrun.data import DOWNLOAD_NAMES

    if args.data_command in ("weights", "stats", "show"):
        {"weights": _class_weights, "stats": _data_stats, "show": _data_show}[args.data_command](args)
        return
    dataset = DOWNLOAD_NAMES[args.dataset]
    if args.data_command == "synth":
        written = dataset.synthesize(args.root, args.train_images, args.val_images, args.height, args.width, args.seed)
        print(f"{args.root}: wrote {written} synthetic scenes; next: {dataset.prepare_command} {args.root}")
    else:
        written = dataset.prepare(args.root)
        print(f"{args.root}: wrote {written} files (the others were already prepared)")


def _split(args, split: str):
    from segrun import build
    from segrun.data import DATASETS, resolve_root

    loaded = build.load_spec(args.spec, args.overrides)
    return DATASETS[loaded.data.dataset](resolve_root(loaded.data.root), split)


def _class_weights(args) -> None:
    from segrun.data.statistics import as_toml, class_weights, label_statistics

    dataset = _split(args, "train")
    statistics = label_statistics(dataset)
    print(f"# {args.method} weights from {len(dataset)} training labels in {dataset.root}")
    print(as_toml(class_weights(statistics.class_pixels, statistics.image_pixels, args.method), dataset.class_names))


def _data_stats(args) -> None:
    from segrun.data.statistics import label_statistics

    for split in ("train", "val"):
        dataset = _split(args, split)
        statistics = label_statistics(dataset)
        labelled = max(int(statistics.class_pixels.sum()), 1)
        sizes = ", ".join(f"{h}x{w}: {n}" for (h, w), n in statistics.sizes.most_common())
        print(f"{split}: {len(dataset)} images in {dataset.root}; sizes {sizes}")
        for name, pixels in zip(dataset.class_names, statistics.class_pixels):
            print(f"  {name:<16} {pixels / labelled:8.4%}")


def _data_show(args) -> None:
    from segrun import build
    from segrun.data.preview import write_sample_grid

    out = write_sample_grid(build.load_spec(args.spec, args.overrides), args.split, args.n, args.out)
    print(f"{out}: {args.n} {args.split} samples after the spec's pipeline")


def _doctor(args) -> None:
    from segrun.doctor import report

    print(report())


def _bench(args) -> None:
    import torch

    for path in (args.json, args.md, getattr(args, "plot", None)):
        if path is not None and path.exists():
            raise UserError(f"{path}: already exists; give another --json/--md/--plot path")
    if args.bench_command == "data":
        _bench_data(args)
        return
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu)")
    if args.bench_command == "train":
        _bench_train(args, device)
        return
    from benchmarks import ops

    ops.run(device, args.size, args.repeats, compile_peers=args.compile,
            after_case=lambda result: _write_results(args, result, ops.markdown))
    _say_written(args.json, args.md)


def _say_written(*paths) -> None:
    for path in paths:
        if path is not None:
            print(f"{path}: written")


def _write_results(args, result: dict, markdown) -> None:
    from benchmarks import write_results

    write_results(result, markdown, args.json, args.md)


def _bench_data(args) -> None:
    from benchmarks import data
    from segrun import build

    build.load_spec(args.spec)
    _write_results(args, data.run(args.spec, args.workers, args.images, args.samples, args.size), data.markdown)
    _say_written(args.json, args.md)


def _bench_train(args, device: str) -> None:
    from benchmarks import train
    from segrun import build, losses

    loss_names = (None,)
    if args.losses:
        loss_names = tuple(name.strip() for name in args.losses.split(","))
        unknown = [name for name in loss_names if name not in losses.LOSSES]
        if unknown:
            raise UserError(f"--losses: unknown loss {unknown[0]!r}; known: {', '.join(losses.LOSSES)}")
    recipes = tuple(name.strip() for name in args.recipes.split(","))
    for recipe in recipes:
        try:
            train.parse_recipe(recipe)
        except ValueError as error:
            raise UserError(f"--recipes: {error}") from None
    for path in args.specs:
        build.load_spec(path)  # every spec is checked before anything is measured

    result = train.run(args.specs, device, args.steps, args.warmup, loss_names, recipes, args.batch, args.crop,
                       args.inference_size, after_case=lambda result: _write_results(args, result, train.markdown))
    if args.plot is not None:
        train.plot(result, args.plot)
    _say_written(args.json, args.md, args.plot)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "train")
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    try:
        handlers = {"train": _train, "chain": _chain, "show": _show, "validate": _validate, "eval": _eval, "predict": _predict,
                    "report": _report, "summary": _summary,
                    "data": _data, "doctor": _doctor, "bench": _bench}
        handlers[args.command](args)
    except UserError as error:
        print(f"segrun: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
