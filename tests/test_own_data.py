"""A user's own folder of images (dataset = "folder") and ADE20K: generated folders round-trip
through the stored-value mapping, every data command reads them, bad folders and keys are one line,
and models train on them side by side."""
import json
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
    (['data.images="photos/{splt}"'], "data.images: 'photos/{splt}' is not a folder pattern: \"{split}\" is the only "
                                      "field it may hold"),
    (["data.palette=[[1, 2, 3]]"], "data.palette: 1 entries for the 3 classes; give one per class, in data.classes' "
                                   "order"),
    (["data.palette=[[1, 2, 3], [4, 5, 6], [7, 8, 300]]"], "data.palette: [7, 8, 300] is no RGB colour"),
    (["data.label_values=[0, 10, 10]"], "data.label_values: 10 stands for two classes; give each class its own value"),
    (["data.label_values=[0, 10, 70000]"], "data.label_values: 70000 cannot be stored in a label file (0 to 65535)"),
    (["data.ignore_index=10"], "data.ignore_index: 10 is both the ignore value and the stored value of class 'leaf'"),
    (["data.ignore_index=70000"], "data.ignore_index: expected a number in [0, 65535], got 70000"),
    (["data.labl=1"], "data.labl: unknown key; did you mean data.labels?"),
])
def test_bad_folder_keys_are_one_line_naming_the_key(own_data, overrides, message, capsys):
    assert main(["validate", str(own_data), *overrides]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


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


@pytest.mark.parametrize("content, message", [
    (None, "holds neither images/ and annotations/ nor ADEChallengeData2016.zip; put ADEChallengeData2016.zip (the "
           "MIT SceneParsing benchmark, sceneparsing.csail.mit.edu) there and run this again"),
    (b"not a zip", "ADEChallengeData2016.zip: not a readable zip file"),
])
def test_ade20k_prepare_without_a_readable_download_is_one_line(tmp_path, content, message, capsys):
    if content is not None:
        (tmp_path / "ADEChallengeData2016.zip").write_bytes(content)
    assert main(["data", "prepare", "ade20k", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


# ---- the README's example ----------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The TOML block of the README's "Your own data" section."""
    section = (REPO / "README.md").read_text().split("## Your own data in 15 lines of TOML", 1)[1]
    return section.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_readme_s_own_data_example_runs_two_models_into_one_report(tmp_path, monkeypatch, capsys):
    example = readme_example()
    assert len([line for line in example.splitlines() if line.strip()]) <= 15
    write_folder(tmp_path / "plants")
    spec = tmp_path / "plants.toml"
    spec.write_text(example.replace('extends = "specs/', f'extends = "{REPO}/specs/')
                    .replace('root = "/data/plants"', f'root = "{tmp_path / "plants"}"'))
    on_this_machine = ['trainer.accelerator="cpu"', "trainer.devices=1", 'trainer.strategy="auto"',
                       "trainer.sync_batchnorm=false"]  # the recipe's two GPUs
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
