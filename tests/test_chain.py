"""Chains: stages in order, each from the previous stage's checkpoint; cached and resumable."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segrun.chain import load_chain, run_chain
from segrun.cli import main
from segrun.spec import SpecError

REPO = Path(__file__).resolve().parents[1]



CHAIN = """
name = "tinychain"
[[stage]]
name = "fine"
spec = "stage.toml"
[[stage]]
name = "second"
spec = "stage.toml"
overrides = ["trainer.epochs={second_epochs}", "optimizer.lr=0.001"]
start_from = "best"
[[stage]]
name = "third"
spec = "stage.toml"
overrides = ["optimizer.lr=0.0005"]
start_from = "last"
"""


@pytest.fixture
def chain_file(tmp_path, tiny_spec):
    tiny_spec(name="stage.toml", train_images=8, val_images=2, width=96, lr=0.002, epochs=1)
    path = tmp_path / "chain.toml"
    path.write_text(CHAIN.format(second_epochs=2))
    return path


def test_stages_start_from_the_previous_checkpoint_and_a_rerun_trains_nothing(chain_file, tmp_path, capsys):
    runs = tmp_path / "runs"
    folders = run_chain(chain_file, runs, progress=False)
    assert [f.path.name.rsplit("-", 1)[0] for f in folders] == ["tinychain-fine", "tinychain-second", "tinychain-third"]
    second = json.loads(folders[1].metrics_file.read_text())
    assert second["init"]["path"] == str(folders[0].best_checkpoint().resolve())
    assert len(second["init"]["sha256"]) == 64
    third = json.loads(folders[2].metrics_file.read_text())
    assert third["init"]["path"] == str((folders[1].checkpoints / "last.ckpt").resolve())
    finished = {f.path: f.metrics_file.stat().st_mtime for f in folders}
    capsys.readouterr()

    assert main(["chain", str(chain_file), "--runs", str(runs), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("already holds this finished run") == 3
    assert {f.path: f.metrics_file.stat().st_mtime for f in folders} == finished

    assert main(["chain", str(chain_file), "--runs", str(runs), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count(": done: ") == 3 and 'name = "tinychain-second"' in out


def test_a_chain_killed_in_stage_two_resumes_stage_two_only(chain_file, tmp_path, capsys):
    chain_file.write_text(CHAIN.format(second_epochs=8))  # long enough that the kill lands mid-stage
    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "segrun", "chain", str(chain_file), "--runs", str(runs), "--no-progress"],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(runs.glob("tinychain-second-*/checkpoints/last.ckpt")):
        assert process.poll() is None and time.monotonic() < deadline, "stage 2 never wrote a checkpoint"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    (second,) = runs.glob("tinychain-second-*")
    assert not (second / "metrics.json").exists()

    assert main(["chain", str(chain_file), "--runs", str(runs), "--no-progress"]) == 0
    out = capsys.readouterr().out
    stage0, rest = out.split("stage 1 (second)")
    assert "already holds this finished run" in stage0 and "resuming" not in stage0
    assert f"resuming {second} from last.ckpt" in rest.split("stage 2 (third)")[0]
    assert (second / "metrics.json").is_file() and list(runs.glob("tinychain-third-*/metrics.json"))


def test_overrides_apply_to_every_stage_and_up_to_stops_after_a_stage(chain_file, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["chain", str(chain_file), "seed=7", "optimizer.lr=0.004", "--up-to", "second", "--runs", str(runs),
                 "--no-progress"]) == 0
    (fine,), (second,) = runs.glob("tinychain-fine-*"), runs.glob("tinychain-second-*")
    assert not list(runs.glob("tinychain-third-*"))
    assert "seed = 7" in (fine / "spec.toml").read_text() and "seed = 7" in (second / "spec.toml").read_text()
    assert "lr = 0.004" in (fine / "spec.toml").read_text()  # the stage's own lr=0.001 comes first, then these
    assert "lr = 0.004" in (second / "spec.toml").read_text()
    capsys.readouterr()
    assert main(["chain", str(chain_file), "--up-to", "thrid", "--runs", str(runs), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (f"segrun: error: {chain_file}: no stage 'thrid'; did you mean third? "
                                               "(stages: fine, second, third, or 0 to 2)")


def test_a_stage_stopped_by_a_signal_is_a_stop_not_a_failure(chain_file, tmp_path, signal_during, capsys):
    signal_during(signal.SIGTERM, step=0)
    assert main(["chain", str(chain_file), "--runs", str(tmp_path / "runs"), "--no-progress"]) == 128 + signal.SIGTERM
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert " on SIGTERM; checkpoints/interrupted.ckpt holds it; run the same command to resume" in line
    assert "failed" not in line


def test_a_failed_stage_stops_the_chain_with_its_error(chain_file, tmp_path, capsys):
    # stage 1's learning rate makes its loss overflow at once
    chain_file.write_text(CHAIN.format(second_epochs=1).replace('"optimizer.lr=0.001"', '"optimizer.lr=1e30"'))
    runs = tmp_path / "runs"
    assert main(["chain", str(chain_file), "--runs", str(runs), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segrun: error: chain tinychain: stage 1 (second) failed: ") and err.count("\n") == 0
    assert "the training loss became" in err
    assert err.endswith(f"after fixing it, `segrun chain {chain_file}` continues here (finished stages are kept)")
    assert list(runs.glob("tinychain-fine-*/metrics.json")) and not list(runs.glob("tinychain-third-*"))


def test_a_stage_after_a_retrained_one_runs_anew(chain_file, tmp_path, capsys):
    import torch

    runs = tmp_path / "runs"
    assert main(["chain", str(chain_file), "--up-to", "second", "--runs", str(runs), "--no-progress"]) == 0
    (fine,), (second,) = runs.glob("tinychain-fine-*"), runs.glob("tinychain-second-*")
    # stage 0 trained again to other weights: its best checkpoint holds other bytes
    (best,) = fine.glob("checkpoints/best-*.ckpt")
    state = torch.load(best, map_location="cpu", weights_only=False)
    first = next(key for key, value in state["state_dict"].items() if value.is_floating_point())
    state["state_dict"][first] += 0.01
    torch.save(state, best)
    capsys.readouterr()
    assert main(["chain", str(chain_file), "--up-to", "second", "--runs", str(runs), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "already holds this finished run" in out.split("stage 1 (second)")[0]  # stage 0 is not trained again
    (again,) = set(runs.glob("tinychain-second-*")) - {second}  # stage 1 runs anew, in a folder of its own
    assert json.loads((again / "metrics.json").read_text())["init"]["path"] == str(best.resolve())
    assert (second / "metrics.json").is_file()  # the earlier stage 1 is kept as it was


def test_chain_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "chain.toml"
    path.write_text('name = "c"\n[[stage]]\nname = "a"\nspec = "x.toml"\nstart_from = "best"\n')
    with pytest.raises(SpecError, match=r"chain\.toml: stage\.0\.start_from: the first stage has no previous stage"):
        load_chain(path)
    path.write_text('name = "c"\n[[stage]]\nname = "a"\nspec = "x.toml"\nstart_fro = "best"\n')
    with pytest.raises(SpecError, match=r"stage\.0\.start_fro: unknown key; did you mean stage\.0\.start_from\?"):
        load_chain(path)


@pytest.mark.parametrize("path", sorted((REPO / "specs").rglob("*_chain.toml")), ids=lambda p: p.name)
def test_shipped_chains_load(path, capsys):
    chain = load_chain(path)
    assert len(chain.stage) == 3
    assert main(["chain", str(path), "--dry-run", "--runs", "/nonexistent-runs"]) == 0
    out = capsys.readouterr().out
    assert "stage 0 (fine): to run" in out
    # every stage's resolved spec, the later ones naming the checkpoint they start from
    assert out.count("[model]") == 3
    assert "to run after stage 0, from the best checkpoint of stage 0 (fine)" in out
    assert 'init = "<the best checkpoint of stage 0 (fine)>"' in out and 'init = "<the best checkpoint of stage 1 (' in out
