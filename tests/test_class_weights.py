import math

import numpy as np
import pytest

from segrun.cli import main
from segrun.data.statistics import as_toml, class_weights
from segrun.spec.loader import tomllib


def test_enet_inverse_and_median_formulas():
    class_pixels = np.array([600, 300, 100, 0])
    image_pixels = np.array([1000, 1000, 500, 0])
    share = class_pixels[:3] / 1000
    enet = 1 / np.log(1.02 + share)
    np.testing.assert_allclose(class_weights(class_pixels, image_pixels, "enet")[:3], enet / enet.mean())
    inverse = 1 / share
    np.testing.assert_allclose(class_weights(class_pixels, image_pixels, "inverse")[:3], inverse / inverse.mean())
    frequency = np.array([0.6, 0.3, 0.2])
    median = 0.3 / frequency
    np.testing.assert_allclose(class_weights(class_pixels, image_pixels, "median")[:3], median / median.mean())
    for method in ("enet", "inverse", "median"):
        weights = class_weights(class_pixels, image_pixels, method)
        assert weights[3] == 0 and weights[:3].mean() == pytest.approx(1.0)


def test_toml_line_parses_back():
    line = as_toml(np.array([0.5, 1.5, 0.0]), ["a", "b", "c"])
    assert tomllib.loads(line)["class_weights"] == [0.5, 1.5, 0.0]
    assert "weight 0: c" in line


def test_cli_prints_weights_for_a_spec(tmp_path, write_spec, capsys, minimal_spec):
    root = tmp_path / "city"
    main(["data", "synth", "cityscapes", str(root), "--train-images", "3", "--val-images", "1", "--height", "64", "--width", "128"])
    main(["data", "prepare", "cityscapes", str(root)])
    capsys.readouterr()
    path = write_spec(minimal_spec.replace('"somewhere"', f'"{root}"'))
    assert main(["data", "weights", str(path), "--method", "median"]) == 0
    out = capsys.readouterr().out
    weights = tomllib.loads(out)["class_weights"]
    assert len(weights) == 19 and math.isclose(sum(w for w in weights if w) / sum(1 for w in weights if w), 1.0, rel_tol=1e-3)
    assert weights[0] > 0 and weights[18] == 0  # road present, bicycle absent
