"""The flat and the study's folder layouts: each dataset synthesised, prepared, loaded and
validated in each, the layout found by itself."""
import shutil

import pytest

from segrun.cli import main
from segrun.data import DATASETS
from segrun.errors import DatasetError

SIZES = ["--train-images", "2", "--val-images", "1", "--height", "64", "--width", "96"]

# download name for synth/prepare, dataset, a folder only that layout has, expected train and val counts
CASES = {
    "cityscapes": ("cityscapes", "cityscapes", {"flat": "leftImg8bit/train",
                                                "study": "leftImg8bit_trainvaltest/leftImg8bit/train"}, 2),
    "cityscapes_coarse": ("cityscapes-coarse", "cityscapes", {
        "flat": "gtCoarse/train_extra", "study": "leftImg8bit_trainextra/leftImg8bit/train_extra"}, 2),
    "pascal_context59": ("pascal-context", "pascal-context", {
        "flat": "VOCdevkit/VOC2010/JPEGImages", "study": "VOCtrainval_03-May-2010/VOCdevkit/VOC2010/JPEGImages"}, 2),
    "ade20k": ("ade20k", "ade20k", {"flat": "images/training", "study": "ADEChallengeData2016/images/training"}, 2),
}
PREPARED = {"cityscapes", "cityscapes_coarse", "pascal_context59"}  # datasets whose labels preparation converts


@pytest.mark.parametrize("layout", ["flat", "study"])
@pytest.mark.parametrize("dataset", list(CASES))
def test_synthesise_prepare_load_and_validate_in_each_layout(dataset, layout, tmp_path, write_spec, capsys):
    synth_name, prepare_name, folders, train_count = CASES[dataset]
    root = tmp_path / "data"
    assert main(["data", "synth", synth_name, str(root), "--layout", layout, *SIZES]) == 0
    assert (root / folders[layout]).is_dir()
    other = "study" if layout == "flat" else "flat"
    assert not (root / folders[other]).exists()
    assert main(["data", "prepare", prepare_name, str(root)]) == 0
    train = DATASETS[dataset](root, "train")
    assert train.layout.name == layout and len(train) == train_count
    image, label = train[0]
    assert image.shape[0] == 3 and image.shape[1:] == label.shape
    path = write_spec(f'name = "tiny"\n[data]\nroot = "{root}"\ndataset = "{dataset}"\n')
    capsys.readouterr()
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    prepared = "labels prepared; " if dataset in PREPARED else ""
    assert f"{dataset} with {train_count} train and 1 val images; {prepared}{layout} layout (" in out
    assert folders[layout].split("/")[0] in out


def test_the_study_s_prepared_pascal_context_is_read_where_the_study_writes_it(tmp_path):
    assert main(["data", "synth", "pascal-context", str(tmp_path), "--layout", "study", *SIZES]) == 0
    assert main(["data", "prepare", "pascal-context", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "VOC2010_Context").iterdir()) == ["Annotations", "Images"]
    assert not (tmp_path / "Images").exists()
    # The study's users keep only its prepared folder beside the downloads, or without them.
    shutil.rmtree(tmp_path / "VOCtrainval_03-May-2010")
    shutil.rmtree(tmp_path / "trainval")
    train = DATASETS["pascal_context60"](tmp_path, "train")
    assert train.layout.name == "study" and len(train) == 2
    assert len(DATASETS["pascal_context60"](tmp_path / "VOC2010_Context", "val")) == 1  # the prepared folder as root


def test_errors_name_the_folders_of_the_layout_found(tmp_path, capsys):
    assert main(["data", "prepare", "pascal-context", str(tmp_path)]) == 2
    assert f"{tmp_path}/VOCdevkit/VOC2010/JPEGImages: no such folder" in capsys.readouterr().err
    (tmp_path / "gtFine_trainvaltest" / "gtFine").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"leftImg8bit_trainvaltest/leftImg8bit/train: no such folder; unpack "
                                            r"leftImg8bit_trainvaltest\.zip \(cityscapes-dataset\.com\) into "
                                            r".*/leftImg8bit_trainvaltest,"):
        DATASETS["cityscapes"](tmp_path, "train")
