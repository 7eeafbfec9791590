"""segrun.load: a trained model used from Python, from a run folder, a checkpoint or a weights file."""
import shutil

import numpy as np
import pytest

import segrun
from conftest import trained_tiny_run
from segrun.cli import main
from segrun.data.image_io import read_rgb
from segrun.errors import UserError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(spec file, run folder, a val image) of a tiny run trained for one epoch."""
    root = tmp_path_factory.mktemp("api")
    spec_file, folder = trained_tiny_run(root, train_images=8, val_images=2)
    return spec_file, folder, next((root / "data" / "leftImg8bit" / "val").rglob("*.png"))


def test_a_run_predicts_train_ids_and_probabilities_of_an_array_or_a_path(trained):
    _, folder, image_file = trained
    predictor = segrun.load(folder)
    image = read_rgb(image_file)
    labels = predictor.predict(image)
    assert labels.shape == image.shape[:2] and labels.dtype == np.uint8
    probabilities = predictor.probabilities(str(image_file))
    assert probabilities.shape == (19, *image.shape[:2]) and np.allclose(probabilities.sum(0), 1, atol=1e-5)
    assert (probabilities.argmax(0) == labels).all()
    assert predictor.class_names[0] == "road" and len(predictor.palette) == 19
    with pytest.raises(ValueError, match="uint8 array"):
        predictor.predict(image.astype(np.float32))


def test_options_replace_the_runs_evaluation_settings_and_the_predictions_follow_them(trained):
    _, folder, image_file = trained
    assert segrun.load(folder).options.flip is False
    options = segrun.load(folder, flip=True, scales=(0.5, 1.0)).options
    assert options.flip is True and options.scales == (0.5, 1.0)
    image = read_rgb(image_file)
    mirror = np.ascontiguousarray(image[:, ::-1])

    def log_probabilities(picture, **settings):
        return np.log(segrun.load(folder, **settings).probabilities(picture).astype(np.float64))

    def softmax(logits):
        exp = np.exp(logits - logits.max(0))
        return exp / exp.sum(0)

    # flip: the softmax of the mean of the image's and the mirror's logits (log-probabilities differ
    # from logits by one value per pixel, which the softmax ignores)
    for scale in (0.5, 1.0):
        plain, mirrored = log_probabilities(image, scales=(scale,)), log_probabilities(mirror, scales=(scale,))
        flipped = segrun.load(folder, scales=(scale,), flip=True).probabilities(image)
        np.testing.assert_allclose(flipped, softmax((plain + mirrored[:, :, ::-1]) / 2), rtol=0, atol=1e-5)
    # scales: the mean of each scale's probabilities (this run's combine)
    each = [segrun.load(folder, scales=(scale,), flip=True).probabilities(image) for scale in (0.5, 1.0)]
    np.testing.assert_allclose(segrun.load(folder, flip=True, scales=(0.5, 1.0)).probabilities(image),
                               (each[0] + each[1]) / 2, rtol=0, atol=1e-6)
    assert not np.allclose(each[0], each[1], atol=1e-3)  # the scales do give different scores
    with pytest.raises(UserError, match="prediction options"):
        segrun.load(folder, scales=())


def test_a_checkpoint_and_a_loose_weights_file_with_its_spec_predict_the_same(trained, tmp_path):
    spec_file, folder, image_file = trained
    expected = segrun.load(folder).predict(image_file)
    (checkpoint,) = folder.glob("checkpoints/best-*.ckpt")
    assert (segrun.load(checkpoint).predict(image_file) == expected).all()
    loose = shutil.copy(checkpoint, tmp_path / "weights.ckpt")
    with pytest.raises(UserError, match=r"not a checkpoint inside a run folder .* spec='spec.toml'"):
        segrun.load(loose)
    assert (segrun.load(loose, spec=spec_file).predict(image_file) == expected).all()


def test_predict_takes_a_loose_weights_file_with_its_spec(trained, tmp_path, capsys):
    spec_file, folder, image_file = trained
    (checkpoint,) = folder.glob("checkpoints/best-*.ckpt")
    loose = shutil.copy(checkpoint, tmp_path / "weights.ckpt")
    assert main(["predict", str(loose), str(image_file), "--out", str(tmp_path / "refused")]) == 2
    assert capsys.readouterr().err == (f"segrun: error: {loose}: not a checkpoint inside a run folder (no spec.toml two "
                                       "folders up); pass the spec it was trained with: segrun predict WEIGHTS IMAGES "
                                       "--out DIR --spec SPEC\n")
    for source, extra, out in [(folder, [], "run"), (loose, ["--spec", str(spec_file), "eval.flip=false"], "loose")]:
        assert main(["predict", str(source), str(image_file), "--out", str(tmp_path / out), "--format", "trainid",
                     *extra]) == 0
    assert "weights: " in capsys.readouterr().out  # what load_trained matched
    (run_prediction,) = (tmp_path / "run").iterdir()
    assert (read_rgb(run_prediction) == read_rgb(tmp_path / "loose" / run_prediction.name)).all()
