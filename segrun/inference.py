"""Test-time prediction: several scales, left-right flip and sliding windows, for every model.

Each scale's logits (averaged with the flipped-back logits of the mirror image) are resized to the
image and combined over scales as the mean of their probabilities or the sum of their logits.
Models that fuse scales themselves (a ScaleFusingModel, e.g. hrnet_ocr_ms by attention) run their
own `predict_scales` over `model_scales` inside each outer scale. Sliding windows (stride 2/3 of
the window) average the logits where windows overlap.
"""
import sys

import torch
from tqdm import tqdm

from segrun.errors import UserError
from segrun.layers import rescale, resize
from segrun.models.base import ScaleFusingModel, SegmentationModel

# Images above this many pixels are predicted in sliding windows only (segrun predict switches by
# itself; eval and validation say to): class scores of a whole 8000x8000 image took 13.6 GB.
LARGEST_WHOLE_IMAGE = 2048 * 2048


def window_starts(size: int, window: int) -> list[int]:
    if size <= window:
        return [0]
    stride = max(1, window * 2 // 3)
    return [*range(0, size - window, stride), size - window]


def sliding_logits(forward, images: torch.Tensor, window) -> torch.Tensor:
    """forward(crop) -> logits at the crop's size, applied window by window over `images`."""
    if window is None:
        return forward(images)
    height, width = images.shape[-2:]
    total, count = None, torch.zeros(1, 1, height, width, device=images.device)
    for top in window_starts(height, window[0]):
        for left in window_starts(width, window[1]):
            logits = forward(images[..., top:top + window[0], left:left + window[1]])
            if total is None:
                total = images.new_zeros(images.shape[0], logits.shape[1], height, width, dtype=logits.dtype)
            total[..., top:top + logits.shape[-2], left:left + logits.shape[-1]] += logits
            count[..., top:top + logits.shape[-2], left:left + logits.shape[-1]] += 1
    return total / count


def sliding_labels(forward, crop, height: int, width: int, window, flip: bool = False,
                   progress: bool = True) -> torch.Tensor:
    """Class ids uint8 [H, W] of one image too large to hold its class scores whole (C x H x W),
    window by window at scale 1.0: forward(crop [1, 3, h, w]) -> logits [1, C, h, w], and
    crop(top, left, h, w) -> that part of the image as the model's input. Windows sweep the image
    row by row (stride 2/3 of the window); only the summed logits of the current row of windows
    are held, C x window height x image width floats, and the rows no later window reaches are
    turned into class ids as the sweep passes them (the argmax of summed logits is the argmax of
    their mean). With `flip`, each window's logits are averaged with those of its mirror image."""
    window_height, window_width = min(window[0], height), min(window[1], width)
    tops, lefts = window_starts(height, window_height), window_starts(width, window_width)
    labels = torch.empty(height, width, dtype=torch.uint8)
    band = None  # summed logits of rows [top, top + window_height)
    with tqdm(total=len(tops) * len(lefts), desc=f"{height}x{width} in {window_height}x{window_width} windows",
              unit="window", disable=not progress, file=sys.stderr) as bar:
        for row, top in enumerate(tops):
            for left in lefts:
                image = crop(top, left, window_height, window_width)
                logits = forward(image)
                if flip:
                    logits = (logits + forward(image.flip(-1)).flip(-1)) / 2
                logits = logits[0].float().cpu()
                if band is None:
                    band = torch.zeros(logits.shape[0], window_height, width)
                band[:, :, left:left + window_width] += logits
                bar.update()
            final = (tops[row + 1] if row + 1 < len(tops) else height) - top  # rows no later window reaches
            labels[top:top + final] = band[:, :final].argmax(0).byte()
            band = torch.cat([band[:, final:], torch.zeros_like(band[:, :final])], dim=1)
    return labels


def predict(model: SegmentationModel, images: torch.Tensor, scales=(1.0,), flip: bool = False, window=None,
            combine: str = "mean_probabilities", model_scales=None) -> torch.Tensor:
    """Class scores [N, C, H, W] for images [N, 3, H, W]: at each scale, the logits of the image (and
    with `flip`, the mean with those of its mirror image), resized to the image; then the mean of
    their softmax probabilities over the scales (combine "mean_probabilities") or the sum of the
    logits (combine "sum_logits", the study's testing). A ScaleFusingModel given `model_scales`
    fuses those scales by itself inside each of the outer `scales`."""
    if model_scales is not None and not isinstance(model, ScaleFusingModel):
        raise ValueError(f"{type(model).__name__} does not fuse scales; model_scales applies to scale-fusing models")
    height, width = images.shape[-2:]
    if window is None and height * width > LARGEST_WHOLE_IMAGE:
        raise UserError(f"a {height}x{width} image is larger than segrun predicts whole ({LARGEST_WHOLE_IMAGE:,} "
                        "pixels, the memory of its class scores grows with it); predict it in sliding windows: "
                        "segrun eval --sliding 1024x1024, or eval.sliding / test.sliding in the spec")

    def forward(crop: torch.Tensor) -> torch.Tensor:
        return model(crop)[0] if model_scales is None else model.predict_scales(crop, model_scales)

    total = 0
    for scale in scales:
        scaled = rescale(images, scale, model.align_corners)
        logits = sliding_logits(forward, scaled, window)
        if flip:
            logits = (logits + sliding_logits(forward, scaled.flip(-1), window).flip(-1)) / 2
        logits = resize(logits, images.shape[-2:], model.align_corners).float()
        total = total + (logits if combine == "sum_logits" else logits.softmax(1))
    return total if combine == "sum_logits" else total / len(scales)


def describe_prediction(options) -> str:
    """One phrase for a spec's [eval] or [test] prediction options, as printed with their scores."""
    parts = [f"scales {', '.join(map(str, options.scales))}"]
    if options.model_scales is not None:
        parts.append(f"attention over {', '.join(map(str, options.model_scales))} inside each")
    if options.flip:
        parts.append("flip")
    if options.sliding is not None:
        parts.append(f"sliding {options.sliding[0]}x{options.sliding[1]}")
    parts.append("summed logits" if options.combine == "sum_logits" else "mean probabilities")
    return ", ".join(parts)
