"""A user's own folder of images (dataset = "folder") and ADE20K: generated folders round-trip
through the stored-value mapping, every data command reads them, bad folders and keys are one line,
and models train on them side by side."""
import json
import re
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import TINY_TRAINING
from segrun import build
from segrun.cli import main
from segrun.data import DATASETS, dataset_of
from segrun.data.ade20k_labels import CLASS_NAMES as ADE_CLASSES
from segrun.data.image_folders import FolderData

CLASSES = ("background", "leaf", "stem")
STORED = (0, 10, 20)  # the stored value of each class
IGNORE = 99  # the stored value of unlabelled pixels
COLOURS = ((40, 40, 40), (60, 200, 60), (160, 100, 40))  # each class painted in its own colour


def scene(index: int, height: int = 48, width: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, training ids with 255 where unlabelled): a background with a leaf disc and a
    stem bar placed by `index`, and an unlabelled band along the top."""
    ids = np.zeros((height, width), np.uint8)
    cv2.circle(ids, (16 + index * 7 % 32, 28), 10, 1, -1)
    ids[16:44, 48 + index % 8: 52 + index % 8] = 2
    ids[:3] = 255
    image = np.array(COLOURS + ((0, 0, 0),) * 253, np.uint8)[ids]
    return image, ids


def stored(ids: np.ndarray) -> np.ndarray:
    lookup = np.full(256, IGNORE, np.uint8)
    lookup[: len(STORED)] = STORED
    return lookup[ids]


def write_folder(root: Path, train: int = 6, val: int = 2) -> None:
    """root/photos/{train,val}/NAME.jpg and root/masks/{train,val}/NAME.png, as a user keeps them."""
    for split, count in (("train", train), ("val", val)):
        for index in range(count):
            image, ids = scene(index + (100 if split == "val" else 0))
            for folder, name, array in (("photos", f"plant_{index:03d}.png", image[..., ::-1]),
                                        ("masks", f"plant_{index:03d}.png", stored(ids))):
                path = root / folder / split / name
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), array)


OWN_SPEC = """name = "plants"
seed = 0
[data]
dataset = "folder"
root = "{root}"
images = "photos/{{split}}"
labels = "masks/{{split}}"
classes = ["background", "leaf", "stem"]
label_values = [0, 10, 20]
ignore_index = 99
batch_size = 3
num_workers = 0
""" + TINY_TRAINING


@pytest.fixture
def own_data(tmp_path) -> Path:
    """A spec file for a generated folder of labelled images."""
    write_folder(tmp_path / "plants")
    spec = tmp_path / "plants.toml"
    spec.write_text(OWN_SPEC.format(root=tmp_path / "plants", lr=0.003, epochs=1))
    return spec


def test_stored_values_round_trip_to_training_ids_and_ignore(own_data):
    loaded = build.load_spec(own_data)
    dataset = dataset_of(loaded.data)
    assert dataset.num_classes == 3 and dataset.class_names == CLASSES and dataset.ignore_index == 255
    assert len(dataset.palette) == 3 and len(set(dataset.palette)) == 3  # generated: one colour per class
    train = dataset(Path(loaded.data.root), "train")
    assert len(train) == 6 and [p.stem for p in train.images] == [p.stem for p in train.labels]
    for index in range(len(train)):
        image, ids = scene(index)
        assert np.array_equal(train.label(index), ids)
        tensor_image, tensor_label = train[index]
        assert np.array_equal(tensor_label.numpy(), ids)
        assert np.array_equal(tensor_image.permute(1, 2, 0).numpy().astype(np.uint8), image)
    assert len(dataset(Path(loaded.data.root), "val")) == 2


def test_without_label_values_and_ignore_index_values_are_ids_and_255_is_ignored(own_data):
    root = Path(build.load_spec(own_data).data.root)
    for label in (root / "masks").rglob("*.png"):  # rewritten as training ids, 255 unlabelled
        values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(label), np.select([values == v for v in STORED], range(len(STORED)), 255).astype(np.uint8))
    text = own_data.read_text().replace("label_values = [0, 10, 20]\n", "").replace("ignore_index = 99\n", "")
    own_data.write_text(text)
    loaded = build.load_spec(own_data)
    assert loaded.data.label_values is None and loaded.data.ignore_index is None
    train = dataset_of(loaded.data)(root, "train")
    assert np.array_equal(train.label(2), scene(2)[1]) and not train.faults(2)


def test_16_bit_labels_take_values_above_255(own_data):
    root = Path(build.load_spec(own_data).data.root)
    wide = (0, 1000, 40000)
    for label in (root / "masks").rglob("*.png"):
        values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
        lookup = {stored: wide_value for stored, wide_value in zip(STORED, wide)} | {IGNORE: 65535}
        cv2.imwrite(str(label), np.vectorize(lookup.get)(values).astype(np.uint16))
    loaded = build.load_spec(own_data, ["data.label_values=[0, 1000, 40000]", "data.ignore_index=65535"])
    train = dataset_of(loaded.data)(root, "train")
    assert train.read_label(1).dtype == np.uint8 and np.array_equal(train.label(1), scene(1)[1])


def test_palette_and_1_bit_labels_are_read_by_their_values_and_rgb_labels_are_a_fault(tmp_path):
    from PIL import Image

    ids = scene(3)[1]
    folders = FolderData(images="images/{split}", labels="labels/{split}", class_names=CLASSES,
                         palette=((0, 0, 0),) * 3, label_values=(0, 1, 2), ignore_value=255)
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images/train/a.png"), scene(3)[0])
    paletted = Image.fromarray(ids, mode="L").convert("P")  # indices equal to the values; colours of its own
    paletted.putpalette([value for index in range(256) for value in (255 - index, index, 7)])
    paletted.save(tmp_path / "labels/train/a.png")
    assert np.array_equal(folders(tmp_path, "train").label(0), ids)

    mask = ids == 1
    Image.fromarray(mask).save(tmp_path / "labels/train/a.png")  # mode "1": what PIL writes for a boolean mask
    assert Image.open(tmp_path / "labels/train/a.png").mode == "1"
    assert np.array_equal(folders(tmp_path, "train").label(0), mask.astype(np.uint8))

    cv2.imwrite(str(tmp_path / "labels/train/a.png"), np.dstack([ids] * 3))
    (fault,) = folders(tmp_path, "train").faults(0)
    assert fault == (f"{tmp_path}/labels/train/a.png: a RGB image, not a label image; labels are single-channel 8- or "
                     "16-bit class values (or a palette image's indices), one per pixel; replace it or remove it "
                     "with its image")


def test_an_image_is_read_as_stored_whatever_its_exif_orientation(tmp_path):
    from PIL import Image

    from segrun.data.image_io import image_size, read_rgb

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to display", as a phone held upright writes
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", exif=exif.tobytes(), quality=100)
    read = read_rgb(tmp_path / "photo.jpg")
    assert read.shape == (20, 40, 3) and image_size(tmp_path / "photo.jpg") == (20, 40)
    assert read[:, :10].min() > 200 and read[:, 12:].max() < 50


def test_a_stored_value_of_no_class_names_the_file_and_the_value(own_data, capsys):
    root = build.load_spec(own_data).data.root
    label = Path(root) / "masks" / "val" / "plant_001.png"
    values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    values[10:12, 10:13] = 30
    cv2.imwrite(str(label), values)
    capsys.readouterr()
    assert main(["validate", str(own_data), "--data", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert (f"{label}: holds label value 30 (6 pixels), neither a class (stored as 0, 10, 20) nor the ignore value "
            "99; fix the file, or add the value to data.label_values (or set data.ignore_index to it)") in out
    assert err.count("\n") == 1 and "1 bad files" in err


@pytest.mark.parametrize("change, message", [
    (lambda root: (root / "photos/train/plant_003.png").unlink(),
     "masks/train: 1 labels without a file of the same name in {root}/photos/train (first: plant_003.png); add the "
     "missing files or remove these"),
    (lambda root: (root / "masks/train/plant_002.png").rename(root / "masks/train/plant_002.tif.bak"),
     "photos/train: 1 images without a file of the same name in {root}/masks/train (first: plant_002.png)"),
    (lambda root: shutil.copy(root / "photos/train/plant_001.png", root / "photos/train/plant_001.jpg"),
     "photos/train/plant_001.png: a second image named plant_001 (beside plant_001.jpg); keep one of them"),
    (lambda root: shutil.rmtree(root / "masks/val"),
     'masks/val: no such folder; put the val split there, or point data.images and data.labels ("{{split}}" stands '
     "for train or val) at your folders under data.root"),
])
def test_unpaired_folders_are_one_line_naming_the_file(own_data, change, message, capsys):
    root = Path(build.load_spec(own_data).data.root)
    change(root)
    capsys.readouterr()
    assert main(["validate", str(own_data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(root=root) in err


@pytest.mark.parametrize("overrides, message", [
    (['data.dataset="cityscapes"'], 'data.images: only dataset = "folder" reads it; remove it for cityscapes'),
    (["data.classes=[]"], "data.classes: 0 classes; a dataset has 1 to 254"),
    (['data.images="photos/{splt}"'], "data.images: 'photos/{splt}' is no folder pattern: it holds \"{split}\" (for "
                                      "train and val) and no other field"),
    (["data.palette=[[1, 2, 3]]"], "data.palette: 1 entries for the 3 classes; give one per class, in data.classes' "
                                   "order"),
    (["data.palette=[[1, 2, 3], [4, 5, 6], [7, 8, 300]]"], "data.palette: [7, 8, 300] is no RGB colour"),
    (["data.label_values=[0, 10, 10]"], "data.label_values: 10 stands for two classes; give each class its own value"),
    (["data.label_values=[0, 10, 70000]"], "data.label_values: 70000 cannot be stored in a label file (0 to 65535)"),
    (["data.ignore_index=10"], "data.ignore_index: 10 is both the ignore value and the stored value of class 'leaf'"),
    (["data.ignore_index=70000"], "data.ignore_index: expected a number in [0, 65535], got 70000"),
    (["data.labl=1"], "data.labl: unknown key; did you mean data.labels?"),
    (['data.labels="masks"'], "data.labels: 'masks' is no folder pattern: it holds \"{split}\" (for train and val) "
                              "and no other field"),
    (['data.images="photos/{split.x}"'], "data.images: 'photos/{split.x}' is no folder pattern"),
    (['data.labels="photos/{split}"'], "data.labels: names the image folder too; keep the labels in a folder of "
                                       "their own"),
    (['data.classes=["background", "leaf", "leaf"]'], "data.classes: 'leaf' names two classes; give each class a "
                                                      "name of its own"),
    (['data.classes=["background", " ", "stem"]'], "data.classes: ' ' is empty"),
    (["data.label_values=null"], "data.label_values: expected"),
])
def test_bad_folder_keys_are_one_line_naming_the_key(own_data, overrides, message, capsys):
    assert main(["validate", str(own_data), *overrides]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_class_stored_as_the_default_ignore_value_is_named(write_spec, capsys):
    path = write_spec('name = "x"\n[data]\ndataset = "folder"\nroot = "r"\nimages = "i/{split}"\nlabels = "l/{split}"\n'
                      'classes = ["a", "b"]\nlabel_values = [0, 255]\n')
    assert main(["validate", str(path)]) == 2
    assert ("data.label_values: 255 is both the ignore value and the stored value of class 'b'; set "
            "data.ignore_index to a value no class is stored as") in capsys.readouterr().err


def test_a_folder_spec_without_classes_says_what_to_give(write_spec, capsys):
    path = write_spec('name = "x"\n[data]\ndataset = "folder"\nroot = "r"\nimages = "i/{split}"\nlabels = "l/{split}"\n')
    assert main(["validate", str(path)]) == 2
    assert ('data.classes: dataset = "folder" needs it: the class names in training-id order, such as '
            '["background", "cell"]') in capsys.readouterr().err


def test_own_data_trains_and_every_data_command_reads_it(own_data, tmp_path, capsys):
    capsys.readouterr()
    assert main(["validate", str(own_data), "--data", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert ("plants: folder with 6 train and 2 val images; images in photos/{split}, labels in masks/{split}, paired "
            "by file name") in out
    assert main(["data", "stats", str(own_data)]) == 0
    stats = capsys.readouterr().out
    assert "train: 6 images" in stats and "48x64: 6" in stats and "leaf" in stats and "stem" in stats
    assert main(["data", "weights", str(own_data)]) == 0
    weights = capsys.readouterr().out
    assert "class_weights = [" in weights and weights.count(",") >= 2
    assert main(["data", "show", str(own_data), "--n", "2", "--out", str(tmp_path / "show.png")]) == 0
    assert cv2.imread(str(tmp_path / "show.png")) is not None

    runs = tmp_path / "runs"
    assert main([str(own_data), "--runs", str(runs), "--no-progress"]) == 0
    (folder,) = runs.iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert 0 <= metrics["mIoU"] <= 1 and set(metrics["per_class_iou"]) == set(CLASSES)
    photos = Path(build.load_spec(own_data).data.root) / "photos" / "val"
    for output_format in ("color", "trainid"):
        assert main(["predict", str(folder), str(photos), "--out", str(tmp_path / output_format), "--format",
                     output_format, "--no-progress"]) == 0
    palette = np.array(dataset_of(build.load_spec(own_data).data).palette, np.uint8)
    for photo in sorted(photos.iterdir()):  # the image blended half and half with its classes' colours
        ids = cv2.imread(str(tmp_path / "trainid" / photo.name), cv2.IMREAD_UNCHANGED)
        assert ids.max() < 3
        expected = cv2.addWeighted(cv2.imread(str(photo)), 0.5, palette[ids][..., ::-1], 0.5, 0)
        assert np.array_equal(cv2.imread(str(tmp_path / "color" / photo.name)), expected)
    assert (tmp_path / "color" / "legend.png").exists()
    capsys.readouterr()
    assert main(["predict", str(folder), str(photos), "--out", str(tmp_path / "cs"), "--format", "cityscapes"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--format cityscapes needs a Cityscapes model" in err and "is for folder" in err

    assert main(["eval", str(folder), "--no-progress"]) == 0
    assert json.loads((folder / "eval.json").read_text())["mIoU"] == metrics["mIoU"]  # the val split, read again
    import segrun

    loaded = segrun.load(folder)
    assert loaded.class_names == CLASSES and [tuple(c) for c in loaded.palette] == [tuple(c) for c in palette]
    assert np.array_equal(loaded.predict(photos / "plant_000.png"), cv2.imread(str(tmp_path / "trainid" / "plant_000.png"),
                                                                             cv2.IMREAD_UNCHANGED))


# ---- ADE20K ------------------------------------------------------------------------------------

def write_ade(root: Path, annotations: dict[str, np.ndarray]) -> None:
    for name, values in annotations.items():
        split = "training" if name.startswith("ADE_train") else "validation"
        for folder, suffix, array in (("images", ".jpg", np.zeros((*values.shape, 3), np.uint8)),
                                      ("annotations", ".png", values)):
            path = root / folder / split / f"{name}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), array)


def test_ade20k_ignores_stored_zero_and_shifts_every_class_down_by_one(tmp_path):
    stored_values = np.array([[0, 1, 2, 150], [75, 0, 149, 1]], np.uint8)
    write_ade(tmp_path, {"ADE_train_00000001": stored_values, "ADE_val_00000001": stored_values[::-1]})
    train = DATASETS["ade20k"](tmp_path, "train")
    assert train.num_classes == 150 and len(train.class_names) == 150 and train.ignore_index == 255
    assert train.class_names[0] == "wall" and train.class_names[149] == "flag"
    assert train.label(0).tolist() == [[255, 0, 1, 149], [74, 255, 148, 0]]
    assert DATASETS["ade20k"](tmp_path, "val").label(0).tolist() == [[74, 255, 148, 0], [255, 0, 1, 149]]


def test_ade20k_class_names_are_the_benchmarks_first_names(reference):
    """Each name, its words joined by ';', is among the synonyms of the benchmark's Name of the same
    Idx (tests/reference/ade20k_objectinfo150.csv), and in all but one begins it."""
    rows = [line.split(",") for line in (reference / "ade20k_objectinfo150.csv").read_text().splitlines()
            if line and not line.startswith("#")][1:]
    assert [int(index) for index, _ in rows] == list(range(1, 151)) and len(ADE_CLASSES) == 150
    for (index, listed), name in zip(rows, ADE_CLASSES):
        assert f";{name.replace(' ', ';')};" in f";{listed};", (index, name, listed)
    assert [name for (_, listed), name in zip(rows, ADE_CLASSES) if not f"{listed};".startswith(
        name.replace(" ", ";") + ";")] == ["television receiver"]  # listed as "television;television;receiver;..."


def test_an_ade20k_value_above_150_names_the_file(tmp_path):
    write_ade(tmp_path, {"ADE_train_00000001": np.array([[0, 151, 3]], np.uint8),
                         "ADE_val_00000001": np.array([[1]], np.uint8)})
    (fault,) = DATASETS["ade20k"](tmp_path, "train").faults(0)
    assert fault == (f"{tmp_path}/annotations/training/ADE_train_00000001.png: holds label value 151 (1 pixels), "
                     "neither a class (stored as 1 to 150) nor the ignore value 0; ADE20K's annotations hold 0 to 150; "
                     "replace the file with the one from the download")


def test_ade20k_prepare_unpacks_the_download_once(tmp_path, capsys):
    made = tmp_path / "made"
    assert main(["data", "synth", "ade20k", str(made), "--train-images", "3", "--val-images", "2", "--height", "40",
                 "--width", "56"]) == 0
    root = tmp_path / "ade"
    root.mkdir()
    with zipfile.ZipFile(root / "ADEChallengeData2016.zip", "w") as archive:
        for path in sorted(made.rglob("*")):
            archive.write(path, f"ADEChallengeData2016/{path.relative_to(made)}")
    capsys.readouterr()
    assert main(["data", "prepare", "ade20k", str(root)]) == 0
    assert "wrote 10 files" in capsys.readouterr().out  # 5 images and their 5 annotations
    train = DATASETS["ade20k"](root, "train")
    assert train.layout.name == "study" and len(train) == 3 and not list(root.glob(".*"))
    assert np.array_equal(train.label(1), DATASETS["ade20k"](made, "train").label(1))
    assert main(["data", "prepare", "ade20k", str(root)]) == 0  # unpacked already: nothing to do
    assert "wrote 0 files" in capsys.readouterr().out


def zipped(names: list[str]) -> bytes:
    import io

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for name in names:
            archive.writestr(name, b"x")
    return data.getvalue()


@pytest.mark.parametrize("content, message", [
    (None, "holds neither images/ and annotations/ (in it or in ADEChallengeData2016/) nor ADEChallengeData2016.zip; "
           "put ADEChallengeData2016.zip (the MIT SceneParsing benchmark, sceneparsing.csail.mit.edu) there and run "
           "this again"),
    (b"not a zip", "ADEChallengeData2016.zip: cannot be unpacked (File is not a zip file)"),
    (zipped(["ADEChallengeData2016/images/training/a.jpg"]),
     "ADEChallengeData2016.zip: holds no ADEChallengeData2016/annotations/; is it ADEChallengeData2016.zip"),
])
def test_ade20k_prepare_without_a_readable_download_is_one_line_and_leaves_nothing(tmp_path, content, message, capsys):
    if content is not None:
        (tmp_path / "ADEChallengeData2016.zip").write_bytes(content)
    (tmp_path / ".ADEChallengeData2016.unpacking").mkdir()  # as an interrupted run leaves it
    assert main(["data", "prepare", "ade20k", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    leftover = {path.name for path in tmp_path.iterdir()} - {"ADEChallengeData2016.zip"}
    assert leftover == ({".ADEChallengeData2016.unpacking"} if content is None else set())


def test_ade20k_prepare_neither_overwrites_nor_loops_on_a_half_there_dataset(tmp_path, capsys):
    (tmp_path / "ADEChallengeData2016.zip").write_bytes(zipped(["ADEChallengeData2016/images/training/a.jpg",
                                                                "ADEChallengeData2016/annotations/training/a.png"]))
    (tmp_path / "ADEChallengeData2016" / "images").mkdir(parents=True)  # annotations/ missing
    assert main(["data", "prepare", "ade20k", str(tmp_path)]) == 2
    assert (f"{tmp_path}/ADEChallengeData2016: there, but without both images/ and annotations/; remove it, and this "
            "unpacks ADEChallengeData2016.zip there") in capsys.readouterr().err
    assert sorted(path.name for path in (tmp_path / "ADEChallengeData2016").iterdir()) == ["images"]


# ---- the README's example ----------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def readme_section() -> str:
    return (REPO / "README.md").read_text().split("## Your own data in 15 lines of TOML", 1)[1].split("\n## ", 1)[0]


def readme_example() -> str:
    """The TOML block of the README's "Your own data" section."""
    return readme_section().split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_readme_s_own_data_example_runs_two_models_into_one_report(tmp_path, monkeypatch, capsys):
    example = readme_example()
    assert len([line for line in example.splitlines() if line.strip()]) <= 15
    write_folder(tmp_path / "plants")
    spec = tmp_path / "plants.toml"
    spec.write_text(example.replace('extends = "specs/', f'extends = "{REPO}/specs/')
                    .replace('root = "/data/plants"', f'root = "{tmp_path / "plants"}"'))
    one_device = re.search(r"on one, add `([^`]*)`", readme_section()).group(1).split()  # the README's overrides
    on_this_machine = ['trainer.accelerator="cpu"', *one_device]
    assert main(["validate", str(spec), *on_this_machine, "--data", "--no-progress"]) == 0
    runs = tmp_path / "runs"
    assert main([str(spec), "--smoke", "--runs", str(runs), "--no-progress"]) == 0
    assert main([str(spec), "model.name=segformer", "model.backbone=mit_b2", "model.pretrained=pretrained/mit_b2_encoder.pth",
                 "--smoke", "--runs", str(runs), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", *map(str, (runs / "smoke").iterdir())]) == 0
    report = capsys.readouterr().out
    assert "hrnet/hrnet_w18_small" in report and "segformer/mit_b0" in report
    loaded = build.load_spec(spec)
    assert loaded.data.palette[1] == (0, 200, 0) and dataset_of(loaded.data).class_names == CLASSES
