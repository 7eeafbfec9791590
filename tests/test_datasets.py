"""Coarse Cityscapes, fine+coarse and PASCAL Context 59/60 on synthetic downloads."""
import ast
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from segrun.cli import main
from segrun.data import DATASETS, pascal_context
from segrun.data.cityscapes import prepare as prepare_cityscapes
from segrun.data.cityscapes_labels import LABEL_ID_TO_TRAIN_ID
from segrun.data.downloads import BROKEN_IN_DOWNLOAD
from segrun.data.image_io import read_label, read_rgb
from segrun.data.pascal_context import prepare as prepare_context
from segrun.data.synthetic_cityscapes import render_scene, scene_seed, synthesize_with_coarse
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
    assert {p.parent.parent.name for p in coarse} == {"train_extra"} and len(coarse) == 3 + len(BROKEN_IN_DOWNLOAD)
    for source in coarse:
        label_ids = read_label(source)
        train_ids = read_label(source.with_name(source.name.replace("labelIds", "labelTrainIds")))
        assert np.array_equal(train_ids, LABEL_ID_TO_TRAIN_ID[label_ids])
        assert (label_ids == 0).any() and (train_ids[label_ids == 0] == 255).all()
    # The coarse label of a scene against its fine labels (those the generator drew it from).
    fine = LABEL_ID_TO_TRAIN_ID[render_scene(64, 128, scene_seed(0, "train_extra", 0))[1]]
    (coarse_file,) = cityscapes_root.glob("gtCoarse/train_extra/augsburg/*_gtCoarse_labelTrainIds.png")
    coarse_of_scene = read_label(coarse_file)
    assert (coarse_of_scene == 255).sum() > (fine == 255).sum()  # coarse: large void areas
    assert ((coarse_of_scene == fine) | (coarse_of_scene == 255)).all()


@pytest.mark.parametrize("name, train_count", [("cityscapes", 3), ("cityscapes_coarse", 3), ("cityscapes_fine_coarse", 6)])
def test_cityscapes_variants_read_their_sources_and_fine_val(cityscapes_root, name, train_count):
    train, val = DATASETS[name](cityscapes_root, "train"), DATASETS[name](cityscapes_root, "val")
    assert len(train) == train_count and len(val) == 2
    assert all("gtFine" in str(label) for label in val.labels)
    image, label = train[train_count - 1]
    assert image.shape == (3, 64, 128) and label.shape == (64, 128) and label.dtype.is_signed
    assert set(label.unique().tolist()) <= set(range(19)) | {255}


def test_the_coarse_set_is_train_extra_less_the_broken_image_pair_by_name(cityscapes_root):
    # The release also has coarse labels for the fine train images; the study's coarse set leaves them out.
    for fine in cityscapes_root.glob("gtFine/train/*/*_gtFine_labelIds.png"):
        coarse = cityscapes_root / "gtCoarse" / "train" / fine.parent.name / fine.name.replace("gtFine", "gtCoarse")
        coarse.parent.mkdir(parents=True, exist_ok=True)
        coarse.write_bytes(fine.read_bytes())
    (broken,) = BROKEN_IN_DOWNLOAD
    for name, train_count in (("cityscapes_coarse", 3), ("cityscapes_fine_coarse", 6)):
        train = DATASETS[name](cityscapes_root, "train")
        assert len(train) == train_count and train.left_out == [f"{broken} ({BROKEN_IN_DOWNLOAD[broken]})"]
        assert not any("gtCoarse/train/" in str(label) for label in train.labels)
        assert not any(broken in str(path) for path in train.images + train.labels)
        for image, label in zip(train.images, train.labels):  # every pair stays aligned
            assert label.name.startswith(image.name.removesuffix("_leftImg8bit.png") + "_gt")
        train[train_count - 1]
    assert (cityscapes_root / "gtCoarse/train_extra/troisdorf" / f"{broken}_gtCoarse_labelTrainIds.png").exists()
    with pytest.raises(OSError, match="not a readable image"):  # the synthetic download's broken image, as the real one
        read_rgb(next(cityscapes_root.glob(f"leftImg8bit/train_extra/troisdorf/{broken}_leftImg8bit.png")))


@pytest.mark.parametrize("layout", ["flat", "study"])
def test_prepare_names_an_unreadable_coarse_label_skips_it_and_continues(tmp_path, write_spec, capsys, layout):
    synthesize_with_coarse(tmp_path, train_images=3, val_images=2, height=64, width=128, progress=False, layout=layout)
    (truncated,) = tmp_path.glob("**/train_extra/bamberg/*_gtCoarse_labelIds.png")
    truncated.write_bytes(truncated.read_bytes()[:100])
    capsys.readouterr()
    assert main(["data", "prepare", "cityscapes", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{truncated}: not a readable image, skipped" in out
    assert "wrote 8 files\n" in out  # 3 + 2 fine, 3 coarse of the 4 (the broken image's label included)
    assert "already prepared" not in out  # nothing was, in a fresh folder
    coarse = DATASETS["cityscapes_coarse"](tmp_path, "train")
    assert len(coarse) == 2 and "bamberg_000000_000019 (its label bamberg_000000_000019_gtCoarse_labelIds.png " \
        "cannot be read)" in coarse.left_out
    coarse[1]
    path = write_spec(f'name = "tiny"\n[data]\nroot = "{tmp_path}"\ndataset = "cityscapes_coarse"\n')
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path}: train leaves out 2: " in out and "bamberg_000000_000019 (its label" in out
    # A fine label is never left out: the loader asks for it.
    (fine,) = tmp_path.glob("**/gtFine/val/lindau/*_gtFine_labelIds.png")
    fine.write_bytes(fine.read_bytes()[:100])
    fine.with_name(fine.name.replace("labelIds", "labelTrainIds")).unlink()
    assert main(["data", "prepare", "cityscapes", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{fine}: not a readable image, skipped" in out
    assert "wrote 0 files (everything readable was already prepared)" in out
    with pytest.raises(DatasetError, match=r"lindau_000000_000019_gtFine_labelTrainIds\.png: missing \(1 of 2 val"):
        DATASETS["cityscapes_coarse"](tmp_path, "val")


def test_coarse_without_train_extra_names_the_download(tmp_path):
    from segrun.data.synthetic_cityscapes import synthesize

    synthesize(tmp_path, train_images=1, val_images=1, height=64, width=128, progress=False)
    prepare_cityscapes(tmp_path, progress=False)
    with pytest.raises(DatasetError, match=r"leftImg8bit/train_extra: no such folder; unpack leftImg8bit_trainextra\.zip"):
        DATASETS["cityscapes_coarse"](tmp_path, "train")


def reference_context_classes() -> tuple[list[int], list[str]]:
    """The 60 classes as tests/reference/pascal_context.md lists them (not as segrun's code does):
    the 459-label id of each class, and its name."""
    text = (Path(__file__).parent / "reference" / "pascal_context.md").read_text()
    ids = ast.literal_eval(re.search(r"```\n(\[.*?\])\n```", text, re.S).group(1))
    names = re.search(r"Class names in that order: (.*)\.\n", text).group(1).split(", ")
    assert len(ids) == len(names) == 60
    return ids, names


def test_context_preparation_writes_the_reference_classes_for_every_full_label_id(context_root):
    ids, names = reference_context_classes()
    # One image's label map holds every id of the 459-label space (0..459), the others the generator's.
    (first,) = (context_root / "trainval").glob("2008_000000.mat")
    shape = scipy.io.loadmat(first)["LabelMap"].shape
    every_id = np.resize(np.arange(460, dtype=np.uint16), shape)
    scipy.io.savemat(first, {"LabelMap": every_id})
    assert prepare_context(context_root, progress=False) == 5
    for split, count in (("train", 3), ("val", 2)):
        labels = sorted((context_root / "Annotations" / split).glob("*.png"))
        assert len(labels) == count
        for label_file in labels:
            full = scipy.io.loadmat(context_root / "trainval" / f"{label_file.stem}.mat")["LabelMap"]
            expected = np.zeros_like(full)  # an id outside the 60 is background
            for index, full_id in enumerate(ids):
                expected[full == full_id] = index
            assert np.array_equal(read_label(label_file), expected), label_file
            assert (context_root / "Images" / split / f"{label_file.stem}.jpg").read_bytes() == \
                (context_root / "VOCdevkit" / "VOC2010" / "JPEGImages" / f"{label_file.stem}.jpg").read_bytes()
    assert set(np.unique(read_label(context_root / "Annotations" / "train" / "2008_000000.png"))) == set(range(60))
    assert prepare_context(context_root, progress=False) == 0
    sixty, fifty_nine = DATASETS["pascal_context60"](context_root, "val"), DATASETS["pascal_context59"](context_root, "val")
    assert list(sixty.class_names) == names and list(fifty_nine.class_names) == names[1:]


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
    assert grid.shape[0] == 2 * (64 + 4) and grid.shape[1] > 2 * 96  # image | labels, then the legend
    assert (grid[:, 2 * 96:] == 255).mean() > 0.5  # a white legend of swatches and class names
