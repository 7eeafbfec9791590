
import numpy as np
import pytest

from segrun.atomic_write import DiskFull

from segrun.data import DATASETS
from segrun.data.cityscapes import Cityscapes, prepare
from segrun.data.cityscapes_labels import LABEL_ID_TO_TRAIN_ID, TRAIN_CLASS_NAMES
from segrun.data.image_io import read_label, read_rgb, write_image
from segrun.data.synthetic_cityscapes import render_scene, synthesize
from segrun.data.transforms import build_pipeline
from segrun.errors import DatasetError
from segrun.spec import TransformStep


def test_label_id_to_train_id_is_the_official_table():
    expected = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    for label_id in range(256):
        assert LABEL_ID_TO_TRAIN_ID[label_id] == expected.get(label_id, 255), label_id
    assert TRAIN_CLASS_NAMES == ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                                 "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
                                 "bus", "train", "motorcycle", "bicycle")
    assert DATASETS["cityscapes"].num_classes == 19


def test_synthetic_scene_has_the_study_classes_and_void():
    ids = set()
    for seed in range(8):
        image, label = render_scene(128, 256, seed)
        assert image.shape == (128, 256, 3) and image.dtype == np.uint8
        assert label.shape == (128, 256) and label.dtype == np.uint8
        ids |= set(np.unique(label).tolist())
    assert {7, 8, 11, 21, 23, 24, 26} <= ids  # road sidewalk building vegetation sky person car
    assert ids & {1, 2, 4}  # void: ego vehicle, rectification border, static


def test_synthetic_scenes_differ_and_are_reproducible():
    a, b = render_scene(64, 128, 1), render_scene(64, 128, 2)
    assert not np.array_equal(a[1], b[1])
    assert np.array_equal(render_scene(64, 128, 1)[0], a[0])


def test_synth_writes_the_cityscapes_layout(tmp_path):
    assert synthesize(tmp_path, train_images=4, val_images=2, height=64, width=128, progress=False) == 6
    images = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("leftImg8bit/*/*/*.png"))
    assert images[0] == "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    assert "leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png" in images
    labels = sorted(tmp_path.glob("gtFine/*/*/*_gtFine_labelIds.png"))
    assert len(images) == len(labels) == 6
    assert synthesize(tmp_path, train_images=4, val_images=2, height=64, width=128, progress=False) == 0


def test_prepare_converts_with_the_table_and_is_idempotent(tmp_path):
    synthesize(tmp_path, train_images=3, val_images=1, height=64, width=128, progress=False)
    assert prepare(tmp_path, progress=False) == 4
    for source in tmp_path.glob("gtFine/*/*/*_gtFine_labelIds.png"):
        converted = source.with_name(source.name.replace("labelIds", "labelTrainIds"))
        assert np.array_equal(read_label(converted), LABEL_ID_TO_TRAIN_ID[read_label(source)])
    assert not list(tmp_path.rglob("*.partial*"))
    assert prepare(tmp_path, progress=False) == 0


def test_prepare_resumes_after_an_interruption(tmp_path, interrupt_writes):
    from segrun.data import cityscapes

    synthesize(tmp_path, train_images=3, val_images=1, height=64, width=128, progress=False)
    restore = interrupt_writes(cityscapes, after=2)
    with pytest.raises(KeyboardInterrupt):
        prepare(tmp_path, progress=False)
    restore()
    assert prepare(tmp_path, progress=False) == 2


def test_an_image_write_that_fails_on_a_full_disk_leaves_the_previous_image(small_disk):
    path = small_disk / "labels" / "a_labelTrainIds.png"
    write_image(path, np.full((4, 6), 3, np.uint8))
    small_disk.fill(room=0)
    noise = np.random.default_rng(0).integers(0, 19, (512, 512), dtype=np.uint8)  # no room for it
    with pytest.raises(DiskFull, match="a_labelTrainIds.png: no space left on the disk"):
        write_image(path, noise)
    assert np.array_equal(read_label(path), np.full((4, 6), 3, np.uint8))
    assert [p.name for p in path.parent.glob("*.png")] == [path.name] and small_disk.partial_files() == []


def test_dataset_reads_images_and_train_ids(tmp_path):
    synthesize(tmp_path, train_images=2, val_images=1, height=64, width=128, progress=False)
    prepare(tmp_path, progress=False)
    pipeline = build_pipeline([TransformStep("Normalize")])
    dataset = Cityscapes(tmp_path, "train", pipeline)
    image, label = dataset[0]
    assert image.shape == (3, 64, 128) and image.dtype.is_floating_point
    assert label.shape == (64, 128) and label.dtype.is_signed
    raw = read_rgb(dataset.images[0])
    assert abs(float(image[0, 0, 0]) - (raw[0, 0, 0] / 255 - 0.485) / 0.229) < 1e-4
    assert set(label.unique().tolist()) <= set(range(19)) | {255}


def test_train_pipeline_pads_crops_with_ignore(tmp_path):
    synthesize(tmp_path, train_images=1, val_images=1, height=64, width=128, progress=False)
    prepare(tmp_path, progress=False)
    crop = TransformStep("RandomCrop", {"height": 96, "width": 96, "pad_if_needed": True, "fill_mask": 255})
    _, label = Cityscapes(tmp_path, "train", build_pipeline([crop]))[0]
    assert label.shape == (96, 96)
    assert (label == 255).sum() >= 96 * (96 - 64)


def test_missing_layout_and_unprepared_labels_say_what_to_run(tmp_path):
    with pytest.raises(DatasetError, match=r"leftImg8bit/train: no such folder; unpack leftImg8bit_trainvaltest\.zip"):
        Cityscapes(tmp_path, "train")
    synthesize(tmp_path, train_images=1, val_images=1, height=64, width=128, progress=False)
    with pytest.raises(DatasetError, match=r"missing \(1 of 1 train gtFine labels\); run: segrun data prepare cityscapes"):
        Cityscapes(tmp_path, "train")
    with pytest.raises(DatasetError, match=r"gtFine: no such folder"):
        prepare(tmp_path / "elsewhere", progress=False)
