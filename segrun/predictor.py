"""A trained model for use from Python (`segrun.load`): images in, train ids or class probabilities
out, with the run's normalisation and prediction protocol. `segrun export` exports the same
computation."""
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segrun import build
from segrun.data import dataset_of
from segrun.data.image_io import read_rgb
from segrun.data.transforms import build_pipeline
from segrun.errors import UserError, why_not_there
from segrun.models.weights import load_trained
from segrun.run_folder import RunFolder, locate
from segrun.spec import PredictionSpec, Spec


class Normalisation(nn.Module):
    """The Normalize step of a pipeline on a float image batch [N, 3, H, W] of 0-255 values, as
    albumentations' standard normalisation: (x - mean * max_pixel_value) / (std * max_pixel_value)."""

    def __init__(self, mean, std, max_pixel_value: float):
        super().__init__()
        self.register_buffer("shift", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * max_pixel_value)
        self.register_buffer("scale", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * max_pixel_value)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.shift) / self.scale


def normalisation(steps) -> nn.Module:
    """The pixel-wise part of a pipeline (its Normalize step; none: the identity), so a prediction
    lines up with its image."""
    normalize = [step for step in steps if step.name == "Normalize"]
    if not normalize:
        return nn.Identity()
    transform = build_pipeline(normalize[-1:]).transforms[0]
    if transform.normalization != "standard":
        raise UserError(f"Normalize with normalization = {transform.normalization!r}: segrun.load and export "
                        "apply the standard one (mean and std) only")
    return Normalisation(transform.mean, transform.std, transform.max_pixel_value)


class PredictionModule(nn.Module):
    """Class scores [N, C, H, W] of float RGB images [N, 3, H, W] with values 0-255: the normalisation,
    then segrun.inference.predict with the protocol's options (mean probabilities, or summed logits)."""

    def __init__(self, model: nn.Module, normalise: nn.Module, options: PredictionSpec):
        super().__init__()
        self.model = model
        self.normalise = normalise
        self.options = options

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return build.predictor(self.options)(self.model, self.normalise(images))


class Predictor:
    """A trained model with its run's normalisation and prediction protocol, on one device."""

    def __init__(self, spec: Spec, module: PredictionModule, device: torch.device):
        self.spec = spec
        self.module = module.to(device).eval()
        self.device = device
        dataset = dataset_of(spec.data)
        self.class_names: tuple[str, ...] = tuple(dataset.class_names)  # by train id
        self.palette = dataset.palette  # RGB colour of each train id

    @property
    def options(self) -> PredictionSpec:
        return self.module.options

    def _scores(self, image) -> torch.Tensor:
        if isinstance(image, (str, Path)):
            image = read_rgb(Path(image))
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image as a uint8 array [H, W, 3], got {image.dtype} {list(image.shape)}")
        batch = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float().to(self.device)
        with torch.no_grad():
            return self.module(batch)[0]

    def probabilities(self, image) -> np.ndarray:
        """float32 [classes, H, W]: each pixel's class probabilities (the softmax of the summed
        logits where the protocol sums logits). `image`: an RGB uint8 array [H, W, 3] or a path."""
        scores = self._scores(image)
        if self.options.combine == "sum_logits":
            scores = scores.softmax(0)
        return scores.cpu().numpy()

    def predict(self, image) -> np.ndarray:
        """uint8 [H, W]: each pixel's train id. `image`: an RGB uint8 array [H, W, 3] or a path."""
        return self._scores(image).argmax(0).byte().cpu().numpy()


def _protocol(spec: Spec, options: dict) -> PredictionSpec:
    """The spec's [test] where it has one, else its [eval], with `options` replacing their fields."""
    changed, protocol = build.reported_protocol(spec, options, "prediction options")
    return getattr(changed, protocol)


def load(source, spec=None, overrides=(), device=None, **options) -> Predictor:
    """A trained model ready to predict: `source` is a run folder (its best, else last, checkpoint),
    a checkpoint inside one, or, with `spec` (a spec file and its KEY=VALUE `overrides`), a weights
    file in any layout segrun.models.weights reads. Predictions follow the spec's [test] protocol
    where it has one, else its [eval]; `options` (scales, flip, sliding, combine, model_scales)
    replace its fields. `device`: default the GPU when there is one, else the CPU."""
    source = Path(source)
    if spec is None:
        if source.is_file() and not RunFolder(source.resolve().parent.parent).spec_file.is_file():
            raise UserError(f"{source}: not a checkpoint inside a run folder (no spec.toml two folders up); pass the "
                            "spec it was trained with: segrun.load(PATH, spec='spec.toml')")
        folder, weights = locate(source)
        loaded = build.read_run_spec(folder)
    else:
        if not source.is_file():
            raise UserError(f"{source}: {why_not_there(source, 'weights file')} (with spec=, load takes a weights file)")
        loaded, weights = build.load_spec(spec, overrides), source
    model = build.model(loaded)
    load_trained(model, weights)
    protocol = _protocol(loaded, options)
    steps = loaded.test.pipeline if loaded.test is not None and loaded.test.pipeline else loaded.data.val_pipeline
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return Predictor(loaded, PredictionModule(model, normalisation(steps), protocol), device)
