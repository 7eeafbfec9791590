"""`segrun predict`: a trained run's predictions for image files, as colour overlays, trainId
PNGs, or Cityscapes submission PNGs (official labelIds, named like the input image)."""
from pathlib import Path

import numpy as np
import torch

from segrun import build
from segrun.data import DATASETS
from segrun.data.cityscapes import CityscapesLayout
from segrun.data.cityscapes_labels import LABELS
from segrun.data.image_io import write_image
from segrun.data.preview import colour_labels
from segrun.data.transforms import build_pipeline
from segrun.errors import UserError
from segrun.inference import predict
from segrun.models.weights import load_run_checkpoint
from segrun.run_folder import locate

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _train_id_to_label_id() -> np.ndarray:
    lookup = np.zeros(256, np.uint8)  # ignore and unknown: 0, unlabeled
    for _, label_id, train_id in LABELS:
        if train_id != 255:
            lookup[train_id] = label_id
    return lookup


TRAIN_ID_TO_LABEL_ID = _train_id_to_label_id()


def list_inputs(inputs) -> list[tuple[Path, Path]]:
    """(image, output name relative to --out): folders are searched recursively and keep their layout."""
    files = []
    for path in inputs:
        if path.is_dir():
            files += [(f, f.relative_to(path)) for f in sorted(path.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
        else:
            files.append((path, Path(path.name)))
    return files


def predict_files(run_or_checkpoint: Path, inputs, out: Path, output_format: str, scales=None, flip=None) -> int:
    """Write one prediction per readable input; returns how many were written."""
    import cv2

    folder, checkpoint = locate(run_or_checkpoint)
    spec = build.read_run_spec(folder)
    dataset = DATASETS[spec.data.dataset]
    if output_format == "cityscapes" and not issubclass(dataset, CityscapesLayout):
        raise UserError(f"--format cityscapes needs a Cityscapes run; {folder.path} trained on {spec.data.dataset}")
    task = build.task(spec, load_weights=False)
    load_run_checkpoint(task, checkpoint)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = task.model.to(device).eval()
    # Pixel-wise steps only, so the prediction lines up with the input image.
    normalise = build_pipeline([step for step in spec.data.val_pipeline if step.name == "Normalize"])
    scales, flip = scales or spec.eval.scales, spec.eval.flip if flip is None else flip
    written, skipped = 0, []
    for image_path, name in list_inputs(inputs):
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"{image_path}: not a readable image, skipped")
            skipped.append(image_path)
            continue
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        tensor = normalise(image=image)["image"].float().unsqueeze(0).to(device)
        with torch.no_grad():
            train_ids = predict(model, tensor, scales, flip, spec.eval.sliding).argmax(1)[0].byte().cpu().numpy()
        target = out / name.with_suffix(".png")
        if output_format == "color":
            write_image(target, (0.5 * image + 0.5 * colour_labels(train_ids, dataset.palette)).astype(np.uint8))
        elif output_format == "trainid":
            write_image(target, train_ids)
        else:
            write_image(target, TRAIN_ID_TO_LABEL_ID[train_ids])
        written += 1
    print(f"{out}: wrote {written} {output_format} predictions; skipped {len(skipped)} unreadable")
    return written
