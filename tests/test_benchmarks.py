"""The benchmark commands at tiny sizes on the CPU: they run, and their JSON has the promised shape."""
import json
import subprocess
import sys

import pytest

from segrun.atomic_write import DiskFull

from benchmarks import write_results
from segrun.cli import main

HEADER = {"device", "torch", "cuda", "segrun_commit", "date"}


def test_bench_ops_tiny_on_cpu(tmp_path, capsys):
    out = tmp_path / "ops.json"
    assert main(["bench", "ops", "--device", "cpu", "--size", "tiny", "--repeats", "2", "--compile", "none",
                 "--json", str(out), "--md", str(tmp_path / "ops.md")]) == 0
    result = json.loads(out.read_text())
    assert HEADER <= set(result) and result["copy_bandwidth_gb_s"] > 0
    rows = result["ops"]
    assert {row["op"] for row in rows} == {"confusion_matrix", "rmi_lower_bound", "attention_fuse"}
    impls = {(row["op"], row["impl"]) for row in rows}
    assert {("confusion_matrix", "torchmetrics"), ("rmi_lower_bound", "original"), ("attention_fuse", "eager")} <= impls
    for row in rows:
        assert row["median_ms"] > 0 and row["floor_ms"] > 0 and row["ratio_to_floor"] == pytest.approx(
            row["median_ms"] / row["floor_ms"])
    assert "| op | case |" in (tmp_path / "ops.md").read_text()


def test_bench_ops_with_torch_compile_says_no_warning_of_torchs_own(tmp_path, recwarn):
    """(torch's inductor, compiling the RMI peers, calls its own deprecated `_prims_common.check`.)"""
    assert main(["bench", "ops", "--device", "cpu", "--size", "tiny", "--repeats", "1", "--compile",
                 "rmi_lower_bound", "--json", str(tmp_path / "ops.json")]) == 0
    assert [str(w.message) for w in recwarn if issubclass(w.category, FutureWarning)] == []


def test_bench_train_tiny_on_cpu(tmp_path):
    out, plot = tmp_path / "train.json", tmp_path / "train.png"
    assert main(["bench", "train", "specs/quickstart.toml", "--device", "cpu", "--steps", "1", "--warmup", "1",
                 "--losses", "ce,rmi", "--recipes", "32/contiguous/off,default", "--batch", "2", "--crop", "64x64",
                 "--inference-size", "64x64", "--json", str(out), "--plot", str(plot)]) == 0
    result = json.loads(out.read_text())
    assert HEADER <= set(result)
    rows = result["train"]
    assert [(row["loss"], row["recipe"]) for row in rows] == [
        ("ce", "32/contiguous/off"), ("ce", "default"), ("rmi", "32/contiguous/off"), ("rmi", "default")]
    for row in rows:
        assert {"model", "loss", "recipe", "batch", "ms_per_step", "images_per_s", "peak_mem_gb"} <= set(row)
        assert row["batch"] == [2, 3, 64, 64] and row["ms_per_step"] > 0 and row["params"] > 0
        assert row["precision"] == "32" and row["memory_format"] == "contiguous"  # "default" on a CPU
    assert plot.stat().st_size > 0


def test_bench_train_refuses_the_study_recipe_on_a_cpu(capsys):
    assert main(["bench", "train", "specs/quickstart.toml", "--device", "cpu", "--recipes", "study"]) == 2
    assert 'recipe study.precision = "16-mixed" on the CPU' in capsys.readouterr().err


def test_bench_data_tiny(tmp_path):
    out = tmp_path / "data.json"
    assert main(["bench", "data", "specs/quickstart.toml", "--workers", "0,1", "--images", "2", "--samples", "8",
                 "--size", "64x128", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert HEADER <= set(result) and [row["workers"] for row in result["data"]] == [0, 1]
    assert all(row["images_per_s"] > 0 for row in result["data"])


def test_bench_never_replaces_a_file(tmp_path, capsys):
    out = tmp_path / "ops.json"
    out.write_text("mine")
    assert main(["bench", "ops", "--device", "cpu", "--json", str(out)]) == 2
    assert out.read_text() == "mine" and "already exists" in capsys.readouterr().err


def test_bench_train_names_a_bad_recipe(capsys):
    assert main(["bench", "train", "specs/quickstart.toml", "--device", "cpu", "--recipes", "33/contiguous/off"]) == 2
    assert "--recipes: recipe '33/contiguous/off': expected one of study, default" in capsys.readouterr().err


def test_result_files_are_replaced_whole(small_disk):
    json_path, md_path = small_disk / "results" / "run.json", small_disk / "results" / "run.md"
    write_results({"rows": [1]}, lambda result: f"rows: {result['rows']}\n", json_path, md_path)
    assert json.loads(json_path.read_text()) == {"rows": [1]} and md_path.read_text() == "rows: [1]\n"
    small_disk.fill(room=100)
    with pytest.raises(DiskFull, match=r"run\.json: no space left on the disk to write it"):
        write_results({"rows": list(range(10_000))}, lambda result: "", json_path, md_path)
    assert json.loads(json_path.read_text()) == {"rows": [1]} and small_disk.partial_files() == []


def test_bench_suite_tiny_on_cpu(tmp_path):
    assert main(["bench", "suite", "--device", "cpu", "--size", "tiny", "--out", str(tmp_path)]) == 0
    (folder,) = tmp_path.iterdir()
    assert folder.name.endswith("-suite-tiny")
    summary = json.loads((folder / "suite.json").read_text())
    assert [row["section"] for row in summary["sections"]] == ["build", "cuda tests", "bench ops", "bench train",
                                                              "bench data"]
    assert not any(row["outcome"].startswith("failed") for row in summary["sections"]), summary["sections"]
    train = json.loads((folder / "train.json").read_text())["train"]
    assert [(row["loss"], row["recipe"]) for row in train] == [("wce", "32/contiguous/off"), ("wce", "default")]
    assert all(row["bare_loop_ms_per_step"] > 0 for row in train)
    assert {"ops.md", "train.md", "data.json", "time-complexity.png", "suite.log"} <= {p.name for p in folder.iterdir()}
    assert "== bench train: 2 rows" in (folder / "suite.log").read_text()
    # a second run the same day never replaces the first one's results
    assert main(["bench", "suite", "--device", "cpu", "--size", "tiny", "--out", str(tmp_path)]) == 2


def test_the_benchmarks_import_where_albumentations_is_missing():
    """A GPU machine's image may lack albumentations: bench ops, train and suite must still run there."""
    code = ("import sys; sys.modules['albumentations'] = None; "  # any import of it now fails
            "import benchmarks.suite, benchmarks.train, benchmarks.ops, segrun.build; print('imported')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "imported", done.stderr


def test_bench_data_is_skipped_with_a_message_without_albumentations(monkeypatch, tmp_path):
    import importlib.util

    from benchmarks import suite

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "albumentations" else real_find_spec(name, *args))
    monkeypatch.setitem(suite.SIZES, "tiny", {**suite.SIZES["tiny"], "train_groups": ((("wce",), ("32/contiguous/off",)),)})
    summary = suite.run("cpu", "tiny", tmp_path)
    outcomes = {row["section"]: row["outcome"] for row in summary["sections"]}
    assert outcomes["bench data"] == "skipped: albumentations is not installed here (bench data times its pipelines)"
