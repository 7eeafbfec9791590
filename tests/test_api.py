"""segrun.load: a trained model used from Python, from a run folder, a checkpoint or a weights file."""
import shutil

import numpy as np
import pytest

import segrun
from segrun.cli import main
from segrun.data.image_io import read_rgb
from segrun.errors import UserError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(spec file, run folder, a val image) of a tiny run trained for one epoch."""
    from conftest import TINY_SPEC

    root = tmp_path_factory.mktemp("api")
    spec_file = root / "spec.toml"
    spec_file.write_text(TINY_SPEC.format(dataset="cityscapes", root=root / "data", batch_size=4, train_images=8,
                                          val_images=2, width=128, lr=0.003, epochs=1))
    assert main([str(spec_file), "--runs", str(root / "runs"), "--no-progress"]) == 0
    (folder,) = (root / "runs").iterdir()
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


def test_options_replace_the_runs_evaluation_settings(trained):
    _, folder, _ = trained
    assert segrun.load(folder).options.flip is False
    options = segrun.load(folder, flip=True, scales=(0.5, 1.0)).options
    assert options.flip is True and options.scales == (0.5, 1.0)
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
