"""`segrun submit`'s plan, without a cluster: what it sends for a spec, a chain and the study's rows,
what it leaves out as finished, and what a member's job does (tests/test_slurm.py submits for real)."""
import json
from pathlib import Path

import pytest

from segrun.cli import main
from segrun.errors import UserError
from segrun.spec import SpecError
from segrun.submission import Evaluation, Member, load_cluster_options, minutes, study_plan

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "specs" / "study" / "results.toml"


@pytest.mark.parametrize("text, expected", [("90", 90), ("24:00:00", 1440), ("1:30", 2), ("2-00:00:00", 2880),
                                            ("1-12", 2160), ("00:10:01", 11)])
def test_slurm_time_formats_in_minutes(text, expected):
    assert minutes(text) == expected


def test_a_cluster_table_is_checked_and_flags_replace_its_keys(tmp_path):
    path = tmp_path / "cluster.toml"
    path.write_text('[cluster]\npartition = "gpu"\ntime = "12:00:00"\nsetup = ["module load cuda"]\n')
    options = load_cluster_options(path, {"time": "1-00:00:00", "partition": None})
    assert (options.partition, options.time, options.setup) == ("gpu", "1-00:00:00", ("module load cuda",))
    path.write_text('[cluster]\npartiton = "gpu"\n')
    with pytest.raises(SpecError, match=r"cluster\.toml: cluster\.partiton: unknown key; did you mean cluster\.partition"):
        load_cluster_options(path, {})
    with pytest.raises(UserError, match="expected a SLURM time such as 24:00:00"):
        load_cluster_options(None, {"time": "a day"})


def test_study_rows_that_share_a_spec_train_once_per_seed_and_add_their_evaluations(tmp_path):
    plan, finished = study_plan(MANIFEST, ["cityscapes_ms_ocr.toml", "*hrnet_coarse_chain*"], 2, tmp_path)
    assert finished == []
    singles = [sequence for sequence in plan if len(sequence) == 1]
    chains = [sequence for sequence in plan if len(sequence) > 1]
    # MS OCR: its [test] gives the [0.5, 1, 2] row; the [0.5, 1] row needs one more evaluation
    assert [(m.overrides, [dict(e.options)["model_scales"] for e in m.evaluations]) for (m,) in singles] == [
        (("seed=0",), [(0.5, 1.0)]), (("seed=1",), [(0.5, 1.0)])]
    assert [[m.up_to for m in chain] for chain in chains] == [["fine", "coarse", "fine_again"]] * 2
    assert all(not m.evaluations for chain in chains for m in chain)  # its row is its own [test]
    with pytest.raises(UserError, match="no row matches nothing-like-this"):
        study_plan(MANIFEST, ["nothing-like-this"], 1, tmp_path)


def test_print_gives_each_members_command(tmp_path, tiny_spec, capsys):
    spec = tiny_spec()
    assert main(["submit", str(spec), "--sweep", "optimizer.lr=0.1,0.2", "--seeds", "2", "--runs",
                 str(tmp_path / "runs"), "--print"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0] == f"segrun {spec} optimizer.lr=0.1 seed=0 --runs {tmp_path / 'runs'}"
    assert main(["submit", "--runs", str(tmp_path)]) == 2
    assert "give a spec (or chain) to train, or --study MANIFEST" in capsys.readouterr().err


def test_a_member_trains_then_runs_its_extra_evaluation_once_and_is_then_finished(tmp_path, tiny_spec, capsys):
    spec = tiny_spec(train_images=8, val_images=2, width=96, epochs=1)
    options = (("scales", (1.0, 0.5)), ("flip", True), ("sliding", None), ("combine", "sum_logits"),
               ("model_scales", None))
    member = Member(spec, ("seed=1",), tmp_path / "runs", evaluations=(Evaluation(options, "eval-extra.json"),))
    member()
    (run,) = (tmp_path / "runs").iterdir()
    extra = json.loads((run / "eval-extra.json").read_text())
    assert extra["protocol"] == "eval" and extra["options"]["scales"] == [1.0, 0.5] and extra["options"]["flip"]
    written = (run / "eval-extra.json").stat().st_mtime
    capsys.readouterr()
    member()  # requeued after it finished: nothing trains, nothing is evaluated again
    assert "already holds this finished run" in capsys.readouterr().out
    assert (run / "eval-extra.json").stat().st_mtime == written

    from segrun.submission import sweep_plan
    plan, finished = sweep_plan(spec, [], [], 2, tmp_path / "runs")
    assert finished == [run] and [m.overrides for (m,) in plan] == [("seed=0",)]


def test_each_chain_stage_asks_for_its_own_resources(tmp_path, tiny_spec):
    from segrun.submission import ClusterOptions, resources, sweep_plan

    tiny_spec(name="stage.toml")
    chain = tmp_path / "two_chain.toml"
    chain.write_text('name = "two"\n[[stage]]\nname = "small"\nspec = "stage.toml"\n'
                     '[[stage]]\nname = "big"\nspec = "stage.toml"\n'
                     'overrides = ["trainer.devices=2", "data.num_workers=5"]\n')
    ((small, big),), _ = sweep_plan(chain, [], [], None, tmp_path / "runs")
    assert (resources(small, ClusterOptions()).tasks_per_node, resources(small, ClusterOptions()).cpus_per_task) == (1, 1)
    assert (resources(big, ClusterOptions()).tasks_per_node, resources(big, ClusterOptions()).cpus_per_task) == (2, 6)
