"""`segrun predict`: a trained run's predictions for image files (or a weights file's, with a spec),
as colour overlays, trainId PNGs, or Cityscapes submission PNGs (official labelIds, named like the
input image)."""
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from segrun import build
from segrun.data import dataset_of
from segrun.data.cityscapes import CityscapesLayout
from segrun.data.cityscapes_labels import LABELS
from segrun.data.image_io import write_image
from segrun.data.preview import LEGEND_ROW, colour_labels, legend
from segrun.data.transforms import build_pipeline
from segrun.errors import UserError, why_not_there
from segrun.inference import LARGEST_WHOLE_IMAGE, predict, sliding_labels
from segrun.models.weights import load_run_checkpoint, load_trained
from segrun.run_folder import RunFolder, locate

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Above this many pixels an image's class scores (19 classes x H x W floats: 320 MB at 2048x2048)
# are not held whole; it is predicted window by window.
LARGE_IMAGE_WINDOW = (1024, 1024)


def _train_id_to_label_id() -> np.ndarray:
    lookup = np.zeros(256, np.uint8)  # ignore and unknown: 0, unlabeled
    for _, label_id, train_id in LABELS:
        if train_id != 255:
            lookup[train_id] = label_id
    return lookup


TRAIN_ID_TO_LABEL_ID = _train_id_to_label_id()


def list_inputs(inputs) -> list[tuple[Path, Path]]:
    """(image, output name relative to --out, a .png): folders are searched recursively and keep
    their layout. Inputs that would share an output (b.png and b.jpg) keep their suffix in its name
    (b.png.png, b.jpg.png), so no prediction replaces another."""
    files = []
    for path in inputs:
        if path.is_dir():
            files += [(f, f.relative_to(path)) for f in sorted(path.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
        else:
            files.append((path, Path(path.name)))
    names_of = {}  # output -> the input names that would write it
    for _, name in files:
        names_of.setdefault(name.with_suffix(".png"), set()).add(name)
    named = [(image, name.with_name(name.name + ".png") if len(names_of[name.with_suffix(".png")]) > 1 else
              name.with_suffix(".png")) for image, name in files]
    shared = [name for name, count in Counter(name for _, name in named).items() if count > 1]
    if shared:  # the same file name in two inputs given side by side (a/x.png, b/x.png)
        images = [str(image) for image, name in named if name == shared[0]]
        raise UserError(f"{' and '.join(images)}: would both be predicted as {shared[0]} in --out; predict them into "
                        "separate folders, or give their common folder as the input (which keeps its layout)")
    return named


def check_out_folder(out: Path, inputs) -> None:
    """--out must not be a folder of inputs, nor lie inside a folder given as input: predictions
    would be written among the inputs (and the next run would take them for inputs), and one named
    as an input (b.png) would replace it."""
    for path in inputs:
        folder = (path if path.is_dir() else path.parent).resolve()
        if out.resolve() == folder or (path.is_dir() and folder in out.resolve().parents):
            raise UserError(f"--out {out}: inside the inputs' folder {folder}, where predictions would be written among "
                            "them and could replace them; choose a folder outside it")


def _large_image_labels(model, image: np.ndarray, image_path: Path, normalise, window, scales, flip: bool, device,
                        progress: bool) -> np.ndarray:
    """Class ids of an image above LARGEST_WHOLE_IMAGE pixels, in sliding windows (the run's
    [eval] sliding, else LARGE_IMAGE_WINDOW) at scale 1.0, each window normalised as it is cut:
    memory holds the uint8 image and labels and one row of windows' logits (sliding_labels)."""
    height, width = image.shape[:2]
    if tuple(scales) != (1.0,):
        raise UserError(f"{image_path}: {height}x{width} is larger than segrun predicts whole ("
                        f"{LARGEST_WHOLE_IMAGE:,} pixels), so it is predicted in sliding windows at scale 1.0 only; "
                        "pass --scales 1.0")
    window = window or LARGE_IMAGE_WINDOW

    def crop(top: int, left: int, crop_height: int, crop_width: int) -> torch.Tensor:
        part = np.ascontiguousarray(image[top:top + crop_height, left:left + crop_width])
        return normalise(image=part)["image"].float().unsqueeze(0).to(device)

    def forward(crop_tensor: torch.Tensor) -> torch.Tensor:
        return model(crop_tensor)[0]

    return sliding_labels(forward, crop, height, width, window, flip, progress).numpy()


def _trained_task(run_or_weights: Path, spec_file: Path | None, overrides):
    """(the spec, its task with the trained weights, what the spec came from): a run folder's or a
    checkpoint's in one with its spec.toml, or with `spec_file` a weights file in any layout
    segrun.models.weights reads, with that spec's model and protocol (as `segrun eval --spec`)."""
    if spec_file is not None:
        if not run_or_weights.is_file():
            raise UserError(f"{run_or_weights}: {why_not_there(run_or_weights, 'weights file')} (with --spec, predict takes a weights file; a run "
                            "folder brings its own spec)")
        spec = build.load_spec(spec_file, overrides)
        task = build.task(spec, load_weights=False)
        print(load_trained(task.model, run_or_weights))
        return spec, task, spec_file
    if run_or_weights.is_file() and not RunFolder(run_or_weights.resolve().parent.parent).spec_file.is_file():
        raise UserError(f"{run_or_weights}: not a checkpoint inside a run folder (no spec.toml two folders up); pass "
                        "the spec it was trained with: segrun predict WEIGHTS IMAGES --out DIR --spec SPEC")
    folder, checkpoint = locate(run_or_weights)
    spec = build.read_run_spec(folder)
    task = build.task(spec, load_weights=False)
    load_run_checkpoint(task, checkpoint)
    return spec, task, folder.path


def predict_files(run_or_checkpoint: Path, inputs, out: Path, output_format: str, scales=None, flip=None,
                  progress: bool = True, spec_file: Path | None = None, overrides=()) -> int:
    """Write one prediction per readable input with the run's [test] options (else its [eval]), then
    a UserError naming the unreadable inputs, if any; returns how many were written. With
    `spec_file` (and its KEY=VALUE `overrides`), `run_or_checkpoint` is a weights file predicted
    with that spec. Images above LARGEST_WHOLE_IMAGE pixels go through `_large_image_labels`."""
    import cv2

    check_out_folder(out, inputs)
    spec, task, source = _trained_task(run_or_checkpoint, spec_file, overrides)
    dataset = dataset_of(spec.data)
    if output_format == "cityscapes" and not (isinstance(dataset, type) and issubclass(dataset, CityscapesLayout)):
        raise UserError(f"--format cityscapes needs a Cityscapes model; {source} is for {spec.data.dataset}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = task.model.to(device).eval()
    # Pixel-wise steps only, so the prediction lines up with the input image.
    normalise = build_pipeline([step for step in spec.data.val_pipeline if step.name == "Normalize"])
    options = spec.test or spec.eval  # the run's reported protocol, else its validation
    scales, flip = scales or options.scales, options.flip if flip is None else flip
    written, skipped = 0, []
    for image_path, name in list_inputs(inputs):
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"{image_path}: not a readable image, skipped")
            skipped.append(image_path)
            continue
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        with torch.no_grad():
            if image.shape[0] * image.shape[1] <= LARGEST_WHOLE_IMAGE:
                tensor = normalise(image=image)["image"].float().unsqueeze(0).to(device)
                train_ids = predict(model, tensor, scales, flip, options.sliding, options.combine,
                                    options.model_scales).argmax(1)[0].byte().cpu().numpy()
            else:
                train_ids = _large_image_labels(model, image, image_path, normalise, options.sliding, scales, flip,
                                                 device, progress)
        target = out / name
        if output_format == "color":
            write_image(target, cv2.addWeighted(image, 0.5, colour_labels(train_ids, dataset.palette), 0.5, 0))
        elif output_format == "trainid":
            write_image(target, train_ids)
        else:
            write_image(target, TRAIN_ID_TO_LABEL_ID[train_ids])
        written += 1
    legend_note = ""
    if output_format == "color":  # what the colours mean: every class of the model's dataset
        key = out / "legend.png"
        if written and not key.exists():
            write_image(key, legend(range(dataset.num_classes), dataset.class_names, dataset.palette,
                                    LEGEND_ROW * dataset.num_classes))
            legend_note = f"; their colours' classes in {key}"
    print(f"{out}: wrote {written} {output_format} predictions; skipped {len(skipped)} unreadable{legend_note}")
    if skipped:  # the others are written; the exit status still says that not every input was predicted
        names = ", ".join(str(path) for path in skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        raise UserError(f"{names}: not readable as images, not predicted; replace or remove them (the other {written} "
                        f"predictions are in {out})")
    return written
