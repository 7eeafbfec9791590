"""Coarse Cityscapes, fine+coarse and PASCAL Context 59/60 on synthetic downloads."""
import cv2
import numpy as np
import pytest
import scipy.io

from segrun.cli import main
from segrun.data import DATASETS, pascal_context
from segrun.data.cityscapes import prepare as prepare_cityscapes
from segrun.data.cityscapes_labels import LABEL_ID_TO_TRAIN_ID
from segrun.data.image_io import read_label
from segrun.data.pascal_context import prepare as prepare_context
from segrun.data.pascal_context_labels import CLASS_IDS
from segrun.data.synthetic_cityscapes import synthesize_with_coarse
from segrun.data.synthetic_pascal_context import synthesize as synthesize_context
from segrun.errors import DatasetError


@pytest.fixture
def cityscapes_root(tmp_path):
    synthesize_with_coarse(tmp_path, train_images=3, val_images=2, height=64, width=128, progress=False)
    prepare_cityscapes(tmp_path, progress=False)
    return tmp_path


@pytest.fixture
def context_root(tmp_path):
    synthesize_context(tmp_path, train_images=3, val_images=2, height=48, width=64, progress=False)
    return tmp_path


def test_coarse_labels_are_prepared_with_void_to_ignore(cityscapes_root):
    coarse = sorted(cityscapes_root.glob("gtCoarse/*/*/*_gtCoarse_labelIds.png"))
    assert {p.parent.parent.name for p in coarse} == {"train", "train_extra"} and len(coarse) == 6
    for source in coarse:
        label_ids = read_label(source)
        train_ids = read_label(source.with_name(source.name.replace("labelIds", "labelTrainIds")))
        assert np.array_equal(train_ids, LABEL_ID_TO_TRAIN_ID[label_ids])
        assert (label_ids == 0).any() and (train_ids[label_ids == 0] == 255).all()
    fine = read_label(next(cityscapes_root.glob("gtFine/train/aachen/*_gtFine_labelTrainIds.png")))
    coarse_of_fine = read_label(next(cityscapes_root.glob("gtCoarse/train/aachen/*_gtCoarse_labelTrainIds.png")))
    assert (coarse_of_fine == 255).sum() > (fine == 255).sum()  # coarse: large void areas
    assert ((coarse_of_fine == fine) | (coarse_of_fine == 255)).all()


@pytest.mark.parametrize("name, train_count", [("cityscapes", 3), ("cityscapes_coarse", 6), ("cityscapes_fine_coarse", 6)])
def test_cityscapes_variants_read_their_sources_and_fine_val(cityscapes_root, name, train_count):
    train, val = DATASETS[name](cityscapes_root, "train"), DATASETS[name](cityscapes_root, "val")
    assert len(train) == train_count and len(val) == 2
    assert all("gtFine" in str(label) for label in val.labels)
    image, label = train[train_count - 1]
    assert image.shape == (3, 64, 128) and label.shape == (64, 128) and label.dtype.is_signed
    assert set(label.unique().tolist()) <= set(range(19)) | {255}


def test_coarse_without_train_extra_names_the_download(tmp_path):
    from segrun.data.synthetic_cityscapes import synthesize

    synthesize(tmp_path, train_images=1, val_images=1, height=64, width=128, progress=False)
    prepare_cityscapes(tmp_path, progress=False)
    with pytest.raises(DatasetError, match=r"leftImg8bit/train_extra: no such folder; unpack leftImg8bit_trainextra\.zip"):
        DATASETS["cityscapes_coarse"](tmp_path, "train")


def test_context_preparation_writes_60_classes_pixel_by_pixel(context_root):
    assert prepare_context(context_root, progress=False) == 5
    for split, count in (("train", 3), ("val", 2)):
        labels = sorted((context_root / "Annotations" / split).glob("*.png"))
        assert len(labels) == count
        for label_file in labels:
            full = scipy.io.loadmat(context_root / "trainval" / f"{label_file.stem}.mat")["LabelMap"]
            prepared = read_label(label_file)
            for index, full_id in enumerate(CLASS_IDS):
                assert (prepared[full == full_id] == index).all()
            assert (prepared[~np.isin(full, CLASS_IDS)] == 0).all()
            assert (context_root / "Images" / split / f"{label_file.stem}.jpg").read_bytes() == \
                (context_root / "VOCdevkit" / "VOC2010" / "JPEGImages" / f"{label_file.stem}.jpg").read_bytes()
    assert prepare_context(context_root, progress=False) == 0


def test_context_59_is_60_without_background_pixel_by_pixel(context_root):
    prepare_context(context_root, progress=False)
    sixty, fifty_nine = DATASETS["pascal_context60"](context_root, "train"), DATASETS["pascal_context59"](context_root, "train")
    assert (sixty.num_classes, fifty_nine.num_classes) == (60, 59)
    assert fifty_nine.class_names[0] == "aeroplane" and sixty.class_names[0] == "background"
    for index in range(len(sixty)):
        a, b = sixty.read_label(index), fifty_nine.read_label(index)
        assert (b[a == 0] == 255).all() and (b[a > 0] == a[a > 0] - 1).all()
    image, label = fifty_nine[0]
    assert image.shape == (3, 48, 64) and image.dtype.is_floating_point and label.shape == (48, 64)
    assert set(label.unique().tolist()) <= set(range(59)) | {255}


def test_context_preparation_resumes_after_an_interruption(context_root, interrupt_writes):
    restore = interrupt_writes(pascal_context, after=2)
    with pytest.raises(KeyboardInterrupt):
        prepare_context(context_root, progress=False)
    restore()
    assert prepare_context(context_root, progress=False) == 3
    assert not list(context_root.rglob(".*partial*"))


def test_context_inputs_missing_or_malformed(context_root, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(DatasetError, match=r"VOCdevkit/VOC2010/JPEGImages: no such folder; it comes from VOCtrainval_03-May-2010\.tar"):
        prepare_context(empty, progress=False)
    (context_root / "trainval" / "2008_000001.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match=r"2008_000001\.mat: not a readable \.mat file"):
        prepare_context(context_root, progress=False)
    (context_root / "trainval" / "2008_000001.mat").unlink()
    with pytest.raises(DatasetError, match=r"2008_000001\.mat: missing \(train\.txt lists 2008_000001\); it comes from trainval\.tar\.gz"):
        prepare_context(context_root, progress=False)


def test_unprepared_context_says_what_to_run(context_root):
    with pytest.raises(DatasetError, match=r"Annotations/train: no such folder; run: segrun data prepare pascal-context"):
        DATASETS["pascal_context60"](context_root, "train")





@pytest.mark.parametrize("dataset", ["cityscapes_coarse", "cityscapes_fine_coarse", "pascal_context59", "pascal_context60"])
def test_a_few_training_steps_per_dataset(dataset, tmp_path, tiny_spec, capsys):
    path = tiny_spec(dataset=dataset, batch_size=2, train_images=4, val_images=2, width=96, epochs=1)
    assert main([str(path), "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    assert list((tmp_path / "runs").glob("tiny-*/metrics.json"))
    assert main(["data", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert "train: " in out and "val: 2 images" in out and "%" in out
    assert main(["data", "show", str(path), "--n", "2", "--out", str(tmp_path / "grid.png")]) == 0
    grid = cv2.imread(str(tmp_path / "grid.png"))
    assert grid.shape[0] == 2 * (64 + 4) and grid.shape[1] == 2 * 96
