"""Synthetic street scenes written with the exact Cityscapes file names, in either layout of
segrun.data.downloads (flat, or the study's).

Each scene is drawn from its own seed: sky, buildings with windows, trees, a road in
perspective with lane marks, sidewalks with tiles, cars and people at depth-consistent sizes,
and void regions (ego vehicle, rectification border, static clutter). Colours overlap between
classes (grey road, grey sidewalk, grey buildings; cars in any colour), so a model must use
texture, shape and context; illumination and sensor noise vary per image.
"""
from pathlib import Path

import cv2
import numpy as np

from segrun.atomic_write import write_atomically
from segrun.data.cityscapes_labels import LABEL_ID
from segrun.data.downloads import (
    BROKEN_IN_DOWNLOAD,
    CITYSCAPES,
    Layout,
    cityscapes_folder,
)
from segrun.data.image_io import write_image
from segrun.terminal import bar

CITIES = {"train": ("aachen", "bochum", "bremen"), "val": ("frankfurt", "lindau"),
          "train_extra": ("augsburg", "bamberg", "konstanz")}
SPLIT_SEEDS = {"train": 0, "val": 1, "train_extra": 2}


def file_paths(root: Path, layout: Layout, split: str, name: str, annotation: str) -> tuple[Path, Path]:
    """(image, labelIds) paths of the scene `name` (<city>_<seq>_<frame>) of `split` in `layout`."""
    city = name.split("_")[0]
    return (cityscapes_folder(root, layout, "leftImg8bit", split) / city / f"{name}_leftImg8bit.png",
            cityscapes_folder(root, layout, annotation, split) / city / f"{name}_{annotation}_labelIds.png")


def scene_paths(root: Path, split: str, index: int, annotation: str = "gtFine",
                layout: Layout = CITYSCAPES["flat"]) -> tuple[Path, Path]:
    """(image, labelIds) paths of synthetic scene `index` of `split`, named as Cityscapes names them."""
    cities = CITIES[split]
    name = f"{cities[index % len(cities)]}_{index // len(cities):06d}_{19:06d}"
    return file_paths(root, layout, split, name, annotation)


class _Canvas:
    """An RGB image and its labelId map, painted together."""

    def __init__(self, height: int, width: int):
        self.image = np.zeros((height, width, 3), np.float32)
        self.label = np.zeros((height, width), np.uint8)

    def polygon(self, points, colour, label: str):
        points = np.round(np.asarray(points)).astype(np.int32)
        cv2.fillPoly(self.image, [points], tuple(float(c) for c in colour))
        cv2.fillPoly(self.label, [points], LABEL_ID[label])

    def rectangle(self, x0, y0, x1, y1, colour, label: str | None):
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        if label is None:  # paint detail (windows, marks) without changing the label
            cv2.fillPoly(self.image, [np.round(np.asarray(corners)).astype(np.int32)], tuple(float(c) for c in colour))
        else:
            self.polygon(corners, colour, label)

    def ellipse(self, centre, axes, colour, label: str):
        centre = tuple(int(round(c)) for c in centre)
        axes = tuple(max(1, int(round(a))) for a in axes)
        cv2.ellipse(self.image, centre, axes, 0, 0, 360, tuple(float(c) for c in colour), -1)
        cv2.ellipse(self.label, centre, axes, 0, 0, 360, LABEL_ID[label], -1)


def _grey(rng, low, high, tint=8.0):
    level = rng.uniform(low, high)
    return level + rng.uniform(-tint, tint, size=3)


def _draw_sky_and_buildings(canvas: _Canvas, rng, horizon: int):
    height, width = canvas.label.shape
    top, bottom = rng.uniform(150, 200, 3) * (0.75, 0.85, 1.0), rng.uniform(190, 240, 3) * (0.85, 0.92, 1.0)
    for y in range(horizon + 1):
        canvas.image[y] = top + (bottom - top) * y / max(horizon, 1)
    canvas.label[: horizon + 1] = LABEL_ID["sky"]
    x = -rng.uniform(0, width * 0.1)
    while x < width:
        block_width = rng.uniform(0.08, 0.25) * width
        block_top = horizon - rng.uniform(0.15, 0.95) * horizon
        colour = _grey(rng, 70, 190, tint=25)
        canvas.rectangle(x, block_top, x + block_width, horizon + 2, colour, "building")
        window = colour * rng.uniform(0.35, 0.6)
        step_x, step_y = rng.uniform(5, 10), rng.uniform(6, 12)
        for wy in np.arange(block_top + 3, horizon - 4, step_y):
            for wx in np.arange(x + 3, x + block_width - 4, step_x):
                canvas.rectangle(wx, wy, wx + step_x * 0.5, wy + step_y * 0.5, window, None)
        x += block_width + rng.uniform(-2, 0.06 * width)


def _draw_trees(canvas: _Canvas, rng, horizon: int):
    height, width = canvas.label.shape
    for _ in range(rng.integers(1, 5)):
        cx, cy = rng.uniform(0, width), horizon - rng.uniform(0, 0.5) * horizon
        radius = rng.uniform(0.05, 0.14) * width
        green = np.array([rng.uniform(30, 80), rng.uniform(90, 150), rng.uniform(20, 60)])
        canvas.rectangle(cx - radius * 0.1, cy, cx + radius * 0.1, horizon + 3, green * 0.6, "vegetation")
        for _ in range(rng.integers(3, 7)):
            offset = rng.normal(0, radius * 0.45, 2)
            canvas.ellipse((cx + offset[0], cy + offset[1]), (radius * rng.uniform(0.4, 0.8),) * 2,
                           green * rng.uniform(0.8, 1.15), "vegetation")


def _draw_ground(canvas: _Canvas, rng, horizon: int) -> tuple[float, float, float]:
    """Road and sidewalks in perspective; returns (vanishing x, road half-width at the bottom, horizon)."""
    height, width = canvas.label.shape
    vanish_x = width * rng.uniform(0.35, 0.65)
    half_road = width * rng.uniform(0.35, 0.6)
    curb = width * rng.uniform(0.15, 0.4)
    sidewalk = _grey(rng, 120, 175, tint=12) + (8, 0, 4)
    canvas.rectangle(0, horizon, width, height, sidewalk, "sidewalk")
    for y in np.arange(horizon, height, rng.uniform(4, 8)):  # paving joints, denser far away
        canvas.rectangle(0, y, width, y + 0.8, sidewalk * 0.8, None)
    road = _grey(rng, 55, 105, tint=5)
    canvas.polygon([(vanish_x - 2, horizon), (vanish_x + 2, horizon),
                    (vanish_x + half_road, height), (vanish_x - half_road, height)], road, "road")
    for t in np.arange(0.05, 1.0, 0.12):  # dashed centre line
        y0, y1 = horizon + t * (height - horizon), horizon + (t + 0.05) * (height - horizon)
        w0, w1 = 0.3 + 2.5 * t, 0.3 + 2.5 * (t + 0.05)
        canvas.polygon([(vanish_x - w0, y0), (vanish_x + w0, y0), (vanish_x + w1, y1), (vanish_x - w1, y1)],
                       (215, 215, 205), "road")
    if rng.random() < 0.5:  # a grass verge beyond one sidewalk
        side = rng.choice([-1, 1])
        edge = vanish_x + side * (half_road + curb)
        far = width if side > 0 else 0
        canvas.polygon([(vanish_x + side * 3, horizon), (far, horizon), (far, height), (edge, height)],
                       (70, 125, 45), "vegetation")
    return vanish_x, half_road, horizon


def _draw_objects(canvas: _Canvas, rng, vanish_x: float, half_road: float, horizon: int):
    height, width = canvas.label.shape
    objects = []
    for _ in range(rng.integers(1, 6)):
        objects.append(("car", rng.uniform(0.1, 1.0)))
    for _ in range(rng.integers(2, 7)):
        objects.append(("person", rng.uniform(0.35, 1.0)))
    for _ in range(rng.integers(0, 3)):
        objects.append(("static", rng.uniform(0.2, 1.0)))
    for kind, depth in sorted(objects, key=lambda item: item[1]):  # far ones first
        ground_y = horizon + depth * (height - horizon)
        scale = depth * height / 128
        road_half = half_road * depth
        if kind == "car":
            cx = vanish_x + rng.uniform(-0.8, 0.8) * road_half
            w, h = rng.uniform(28, 40) * scale, rng.uniform(14, 20) * scale
            body = rng.uniform(20, 235, 3)
            canvas.rectangle(cx - w / 2, ground_y - h * 0.6, cx + w / 2, ground_y, body, "car")
            canvas.rectangle(cx - w * 0.32, ground_y - h, cx + w * 0.32, ground_y - h * 0.55, body * 0.9, "car")
            canvas.rectangle(cx - w * 0.27, ground_y - h * 0.93, cx + w * 0.27, ground_y - h * 0.62, (40, 50, 60), None)
            for wheel_x in (cx - w * 0.3, cx + w * 0.3):
                canvas.ellipse((wheel_x, ground_y), (w * 0.1, h * 0.14), (20, 20, 20), "car")
        elif kind == "person":
            side = rng.choice([-1, 1])
            cx = vanish_x + side * (road_half + rng.uniform(0.05, 0.5) * width * depth)
            h = rng.uniform(32, 48) * scale
            clothes = rng.uniform(20, 230, 3)
            canvas.ellipse((cx, ground_y - h * 0.3), (h * 0.1, h * 0.3), clothes * 0.6, "person")
            canvas.ellipse((cx, ground_y - h * 0.62), (h * 0.16, h * 0.22), clothes, "person")
            canvas.ellipse((cx, ground_y - h * 0.9), (h * 0.1, h * 0.1), (205, 165, 135), "person")
        else:
            cx = rng.uniform(0, width)
            size = rng.uniform(6, 14) * scale
            canvas.rectangle(cx, ground_y - size, cx + size * 0.8, ground_y, _grey(rng, 60, 200, 30), "static")


def _draw_void(canvas: _Canvas, rng):
    height, width = canvas.label.shape
    if rng.random() < 0.6:  # the car's own bonnet at the bottom
        top = height * rng.uniform(0.88, 0.95)
        canvas.polygon([(0, height), (width * 0.1, top), (width * 0.9, top), (width, height)], _grey(rng, 20, 60), "ego vehicle")
    border = int(rng.integers(0, 4))
    if border:  # rectification border left and right
        canvas.rectangle(0, 0, border, height, (0, 0, 0), "rectification border")
        canvas.rectangle(width - border, 0, width, height, (0, 0, 0), "rectification border")


def render_scene(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic scene: (uint8 RGB [H, W, 3], uint8 labelIds [H, W])."""
    rng = np.random.default_rng(seed)
    canvas = _Canvas(height, width)
    horizon = int(height * rng.uniform(0.35, 0.55))
    _draw_sky_and_buildings(canvas, rng, horizon)
    _draw_trees(canvas, rng, horizon)
    vanish_x, half_road, horizon = _draw_ground(canvas, rng, horizon)
    _draw_objects(canvas, rng, vanish_x, half_road, horizon)
    _draw_void(canvas, rng)
    image = canvas.image
    leaves = canvas.label == LABEL_ID["vegetation"]
    image[leaves] *= rng.uniform(0.6, 1.3, size=(int(leaves.sum()), 1))  # foliage texture
    light = cv2.resize(rng.uniform(0.7, 1.25, (3, 5)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    image = image * light[..., None] * rng.uniform(0.75, 1.2) + rng.normal(0, 7, image.shape)
    image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.3, 0.9))
    return np.clip(image, 0, 255).astype(np.uint8), canvas.label


def scene_seed(seed: int, split: str, index: int) -> int:
    """The seed scene `index` of `split` is drawn from, in a dataset generated with `seed`."""
    return int(np.random.SeedSequence([seed, SPLIT_SEEDS[split], index]).generate_state(1)[0])


def coarsen(label: np.ndarray, margin: int = 4) -> np.ndarray:
    """A coarse annotation in the style of gtCoarse: each region shrunk by `margin` pixels, so
    boundaries and small objects become void (labelId 0, unlabeled)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    coarse = np.zeros_like(label)
    for label_id in np.unique(label):
        kept = cv2.erode((label == label_id).astype(np.uint8), kernel) > 0
        coarse[kept] = label_id
    return coarse


def synthesize(root: Path, train_images: int = 80, val_images: int = 20, height: int = 128, width: int = 256,
               seed: int = 0, progress: bool = True, layout: str = "flat") -> int:
    """Write the fine train and val scenes that are not there yet, in the named layout of
    segrun.data.downloads; returns how many were written. Each scene's content depends only on
    (seed, split, index), so an interrupted run resumes to the same data."""
    root, folders = Path(root), CITYSCAPES[layout]
    jobs = [("train", i) for i in range(train_images)] + [("val", i) for i in range(val_images)]
    missing = [(split, index) for split, index in jobs
               if not all(path.exists() for path in scene_paths(root, split, index, layout=folders))]
    for split, index in bar(missing, f"synthesising {root}", "image", progress):
        image_path, label_path = scene_paths(root, split, index, layout=folders)
        image, label = render_scene(height, width, scene_seed(seed, split, index))
        write_image(label_path, label)
        write_image(image_path, image)
    return len(missing)


def synthesize_with_coarse(root: Path, train_images: int = 80, val_images: int = 20, height: int = 128,
                           width: int = 256, seed: int = 0, progress: bool = True, layout: str = "flat") -> int:
    """The fine dataset plus the coarse download as the study uses it: `train_images` more scenes in
    leftImg8bit/train_extra with gtCoarse labels, and, as in the real download, the image of
    BROKEN_IN_DOWNLOAD truncated (its coarse label is whole), which the coarse datasets leave out.
    The coarse labels of the fine train scenes (gtCoarse/train), which no dataset reads, are not written."""
    root, folders = Path(root), CITYSCAPES[layout]
    written = synthesize(root, train_images, val_images, height, width, seed, progress, layout)
    missing = [index for index in range(train_images)
               if not all(path.exists() for path in scene_paths(root, "train_extra", index, "gtCoarse", folders))]
    for index in bar(missing, f"synthesising coarse {root}", "image", progress):
        image_path, coarse_path = scene_paths(root, "train_extra", index, "gtCoarse", folders)
        image, label = render_scene(height, width, scene_seed(seed, "train_extra", index))
        write_image(coarse_path, coarsen(label))
        write_image(image_path, image)
        written += 1
    for name in BROKEN_IN_DOWNLOAD:
        image_path, coarse_path = file_paths(root, folders, "train_extra", name, "gtCoarse")
        if not (image_path.exists() and coarse_path.exists()):
            write_image(coarse_path, np.zeros((height, width), np.uint8))  # all void
            encoded = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))[1].tobytes()
            write_atomically(image_path, encoded[: len(encoded) // 2])
            written += 1
    return written
