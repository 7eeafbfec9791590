"""`segrun data`: datasets written synthetically, prepared from their downloads, and inspected
(class weights, statistics, augmented samples). The dataset names come from segrun.data's registry."""
import argparse
from pathlib import Path

from segrun.commands import Command
from segrun.commands.arguments import add_spec


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    from segrun.data import DOWNLOAD_NAMES
    from segrun.data.downloads import LAYOUT_NAMES

    parser.add_argument("dataset", choices=list(DOWNLOAD_NAMES))
    parser.add_argument("root", type=Path)
    parser.add_argument("--layout", choices=LAYOUT_NAMES, default="flat",
                        help="flat: every download unpacked into ROOT (default); study: each download in a folder "
                             "named after it, as the study's README lays them out")
    parser.add_argument("--train-images", type=int, default=80)
    parser.add_argument("--val-images", type=int, default=20)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)


def _synth(args: argparse.Namespace) -> None:
    from segrun.data import DOWNLOAD_NAMES

    dataset = DOWNLOAD_NAMES[args.dataset]
    written = dataset.synthesize(args.root, args.train_images, args.val_images, args.height, args.width, args.seed,
                                 layout=args.layout)
    print(f"{args.root}: wrote {written} synthetic scenes in the {args.layout} layout; next: {dataset.prepare_command} "
          f"{args.root}")


def _prepare_arguments(parser: argparse.ArgumentParser) -> None:
    from segrun.data import DOWNLOAD_NAMES

    # One name per preparation: cityscapes-coarse is prepared by the cityscapes one.
    names_by_preparation = {}
    for name, dataset in DOWNLOAD_NAMES.items():
        names_by_preparation.setdefault(dataset.prepare, name)
    parser.add_argument("dataset", choices=list(names_by_preparation.values()))
    parser.add_argument("root", type=Path)


def _prepare(args: argparse.Namespace) -> None:
    from segrun.data import DOWNLOAD_NAMES

    written = DOWNLOAD_NAMES[args.dataset].prepare(args.root)
    print(f"{args.root}: wrote {written} files" + ("" if written else " (everything readable was already prepared)"))


def _split(args: argparse.Namespace, split: str):
    """The `split` of the dataset that the spec on the command line reads."""
    from segrun import build
    from segrun.data import dataset_of, resolve_root

    loaded = build.load_spec(args.spec, args.overrides)
    return dataset_of(loaded.data)(resolve_root(loaded.data.root), split)


def _weights_arguments(parser: argparse.ArgumentParser) -> None:
    from segrun.data.statistics import METHODS

    add_spec(parser)
    parser.add_argument("--method", choices=METHODS, default="enet",
                        help="enet: 1/ln(1.02+p) (default); inverse: 1/p; median: median frequency balancing")


def _weights(args: argparse.Namespace) -> None:
    from segrun.data.statistics import as_toml, class_weights, label_statistics

    dataset = _split(args, "train")
    statistics = label_statistics(dataset)
    print(f"# {args.method} weights from {len(dataset)} training labels in {dataset.root}")
    print(as_toml(class_weights(statistics.class_pixels, statistics.image_pixels, args.method), dataset.class_names))


def _stats(args: argparse.Namespace) -> None:
    from segrun.data.statistics import label_statistics

    for split in ("train", "val"):
        dataset = _split(args, split)
        statistics = label_statistics(dataset)
        labelled = max(int(statistics.class_pixels.sum()), 1)
        sizes = ", ".join(f"{h}x{w}: {n}" for (h, w), n in statistics.sizes.most_common())
        print(f"{split}: {len(dataset)} images in {dataset.root}; sizes {sizes}")
        for name, pixels in zip(dataset.class_names, statistics.class_pixels):
            print(f"  {name:<16} {pixels / labelled:8.4%}")


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec(parser)
    parser.add_argument("--split", choices=["train", "val"], default="train")
    parser.add_argument("--n", type=int, default=8, help="how many samples (default 8)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")


def _show(args: argparse.Namespace) -> None:
    from segrun import build
    from segrun.data.preview import write_sample_grid

    out = write_sample_grid(build.load_spec(args.spec, args.overrides), args.split, args.n, args.out)
    print(f"{out}: {args.n} {args.split} samples after the spec's pipeline")


DATA = Command(
    help="make or prepare datasets", description="Make or prepare datasets.", metavar="ACTION", subcommands={
        "synth": Command(
            help="write a synthetic dataset in a published layout",
            description="Write synthetic data in a download's exact layout: cityscapes (fine labelIds), "
                        "cityscapes-coarse (fine plus train_extra with gtCoarse, and the download's one broken "
                        "image), pascal-context (VOC2010 devkit and trainval/*.mat), ade20k (images/ and "
                        "annotations/ of ADEChallengeData2016); --layout study arranges the downloads as the study's "
                        "README does (ADE20K: inside ADEChallengeData2016/). Run `segrun data prepare` next. Existing "
                        "files are kept.",
            arguments=_synth_arguments, handler=_synth),
        "prepare": Command(
            help="convert a downloaded dataset into what training reads",
            description="Finds the flat or the study's layout by itself. cityscapes: write *_labelTrainIds.png "
                        "beside each gtFine train/val and gtCoarse train_extra *_labelIds.png (official labelId -> "
                        "trainId table); a label file that cannot be read is named and skipped. pascal-context: "
                        "write Images/{train,val}/*.jpg and Annotations/{train,val}/*.png with the 60 classes (into "
                        "VOC2010_Context/ in the study's layout). ade20k: unpack ROOT/ADEChallengeData2016.zip when its "
                        "folders are not there, and check that every image has its annotation. Idempotent; safe to "
                        "interrupt; the downloads are only read.",
            arguments=_prepare_arguments, handler=_prepare),
        "weights": Command(
            help="per-class loss weights from the training labels",
            description="Count the pixels of each class in the spec's training labels and print class weights "
                        "(mean 1) as a TOML line for [[loss]].",
            arguments=_weights_arguments, handler=_weights),
        "stats": Command(
            help="image counts, sizes and class frequencies of a spec's dataset",
            description="For the train and val splits of the spec's dataset: image count, size distribution and "
                        "the share of labelled pixels of each class.",
            arguments=add_spec, handler=_stats),
        "show": Command(
            help="render augmented samples beside their labels to a PNG",
            description="Render samples after the spec's pipeline (Normalize left out), each image beside its labels "
                        "in the dataset's palette.",
            arguments=_show_arguments, handler=_show),
    })
