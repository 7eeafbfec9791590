"""Albumentations pipelines built from the spec's [[data.train_pipeline]] / [[data.val_pipeline]] tables."""
import inspect
import os
import re

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import

import albumentations as A  # noqa: E402

from segrun.errors import closest  # noqa: E402


class PipelineError(ValueError):
    """A pipeline step that albumentations cannot build; `index` and `key` locate it."""

    def __init__(self, index: int, key: str, problem: str):
        super().__init__(problem)
        self.index, self.key, self.problem = index, key, problem


TRANSFORMS = {name: cls for name, cls in vars(A).items()
              if inspect.isclass(cls) and issubclass(cls, A.BasicTransform) and not inspect.isabstract(cls)}


def _one_line(error: Exception) -> str:
    """Albumentations re-raises pydantic's multi-line report as text: keep "field: problem" pairs."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines and "validation error" in lines[0]:
        lines = [re.sub(r"\s*\[type=.*", "", line) for line in lines[1:] if not line.startswith("For further information")]
        return "; ".join(f"{field}: {problem}" for field, problem in zip(lines[::2], lines[1::2]))
    return " ".join(lines)


def build_step(index: int, name: str, params) -> A.BasicTransform:
    if name not in TRANSFORMS:
        match = closest(name, TRANSFORMS)
        raise PipelineError(index, "name", f"unknown albumentations transform {name!r}" + (f"; did you mean {match}?" if match else ""))
    transform_class = TRANSFORMS[name]
    accepted = inspect.signature(transform_class).parameters
    for key in params:
        if key not in accepted:
            match = closest(key, accepted)
            raise PipelineError(index, key, f"{name} takes no argument {key!r}" + (f"; did you mean {match}?" if match else ""))
    try:
        return transform_class(**params)
    except (TypeError, ValueError) as error:
        raise PipelineError(index, "name", f"{name}: {_one_line(error)}") from None


def build_pipeline(steps, seed: int | None = None) -> A.Compose:
    """The spec's steps in order, then ToTensorV2 (HWC -> CHW). Albumentations draws from its own
    generator, not the global ones: `seed` makes the draws repeatable (None: from OS entropy)."""
    transforms = [build_step(index, step.name, dict(step.params)) for index, step in enumerate(steps)]
    return A.Compose([*transforms, A.ToTensorV2()], seed=seed)


def oversized_crop(steps, largest: tuple[int, int]) -> str | None:
    """Where a pipeline's crop is larger than every image can be when it is cropped, given the
    largest (height, width) of the images: the largest size each step can give (random scales at
    their top, resizes as they resize) against each crop's height and width. One line, or None."""
    height, width = largest
    for index, step in enumerate(steps):
        params = dict(step.params)
        if step.name == "RandomScale":
            limit = params.get("scale_limit", 0.1)
            top = max(limit) if isinstance(limit, (list, tuple)) else abs(limit)
            height, width = height * (1 + top), width * (1 + top)
        elif step.name in ("SmallestMaxSize", "LongestMaxSize") and isinstance(params.get("max_size"), int):
            side = min(height, width) if step.name == "SmallestMaxSize" else max(height, width)
            height, width = height * params["max_size"] / side, width * params["max_size"] / side
        elif step.name == "Resize":
            height, width = params.get("height", height), params.get("width", width)
        elif step.name in ("RandomCrop", "CenterCrop", "Crop") and "height" in params and "width" in params:
            if params["height"] > height or params["width"] > width:
                return (f"step {index} ({step.name} {params['height']}x{params['width']}) is larger than every "
                        f"training image can be there (at most {round(height)}x{round(width)}): every crop is mostly "
                        "padding, and training spends its time on it")
    return None
