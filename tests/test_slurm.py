"""Training on a real one-node SLURM cluster (tests/slurm_cluster.py): preempted and requeued jobs
resume to the end of a job never preempted, a two-task job trains with DDP, and `segrun submit`
sends seeds as an array, skips what finished and chains stages as dependent jobs. Skipped where the
cluster cannot start, unless SEGRUN_TEST_SLURM=required (.ci/run sets it once it installed SLURM)."""
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import slurm_cluster
from conftest import assert_same_end, write_tiny_spec

from segrun.cli import main
from segrun.run_folder import RunFolder
from segrun.spec.loader import tomllib  # tomli before Python 3.11

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[1]

JOB = """#!/bin/bash
#SBATCH --output={log}
#SBATCH --open-mode=append
{options}
export PYTHONUNBUFFERED=1
cd {repo}
srun {python} -m segrun {spec} {overrides} --runs {runs} --no-progress
"""


@pytest.fixture(scope="session")
def slurm():
    try:
        cluster = slurm_cluster.start()
    except slurm_cluster.Unavailable as why:
        if os.environ.get("SEGRUN_TEST_SLURM") == "required":
            raise
        pytest.skip(str(why))
    yield cluster
    cluster.stop()


def submit(cluster, folder: Path, spec: Path, name: str, options: str = "", overrides: str = "") -> tuple[str, Path]:
    """(job id, its log) of `segrun SPEC` into folder/name."""
    log = folder / f"{name}.log"
    script = JOB.format(log=log, options=options, repo=REPO, python=sys.executable, spec=spec, overrides=overrides,
                        runs=folder / name)
    return cluster.sbatch(script, folder), log


def wait_for_text(log: Path, text: str, cluster, job: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not (log.is_file() and text in log.read_text()):
        state = cluster.job(job).get("JobState")
        assert state in {"PENDING", "RUNNING", "COMPLETING"}, f"job {job} {state} before '{text}':\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no '{text}' in {log} after {timeout} s"
        time.sleep(0.2)


def preempt(cluster, job: str, *command: str) -> None:
    """Preempt the job with `command` (which must requeue it) and have it run again at once."""
    restarts = int(cluster.job(job)["Restarts"])
    cluster.run(*command, job)
    deadline = time.monotonic() + 120
    while int(cluster.job(job)["Restarts"]) == restarts:
        assert time.monotonic() < deadline, f"job {job} was not requeued by {' '.join(command)}"
        time.sleep(0.2)
    cluster.wait_for(job, {"PENDING", "RUNNING"}, timeout=120)
    if cluster.job(job)["JobState"] == "PENDING":  # held until its credentials expire; start it now
        cluster.run("scontrol", "update", f"jobid={job}", "StartTime=now+2", check=False)
    cluster.wait_for(job, {"RUNNING"}, timeout=120)


def test_a_job_preempted_twice_and_requeued_by_usr1_ends_as_one_never_preempted(slurm, tmp_path):
    spec = write_tiny_spec(tmp_path, width=96, epochs=8)
    spec.write_text(spec.read_text().replace("num_workers = 0", "num_workers = 2"))  # workers get the signals too
    whole_cpus = f"#SBATCH --cpus-per-task={os.cpu_count()}"  # one job at a time: no two trainings share the cores
    reference, reference_log = submit(slurm, tmp_path, spec, "whole", whole_cpus)
    assert slurm.wait_for(reference, {"COMPLETED", "FAILED", "CANCELLED"})["JobState"] == "COMPLETED", \
        reference_log.read_text()

    job, log = submit(slurm, tmp_path, spec, "preempted", whole_cpus)
    wait_for_text(log, "validation after epoch 0 ", slurm, job)
    preempt(slurm, job, "scontrol", "requeue")  # SIGTERM to every process of the job, then a new run
    wait_for_text(log, "validation after epoch 2 ", slurm, job)
    preempt(slurm, job, "scontrol", "requeue")
    wait_for_text(log, "validation after epoch 4 ", slurm, job)
    preempt(slurm, job, "scancel", "--signal=USR1")  # as #SBATCH --signal=USR1@90 sends it: segrun requeues itself
    final = slurm.wait_for(job, {"COMPLETED", "FAILED", "CANCELLED"})
    text = log.read_text()
    assert final["JobState"] == "COMPLETED" and final["Restarts"] == "3", text
    assert "Traceback" not in text and "killed by signal" not in text, text
    stops = [line for line in text.splitlines() if line.startswith("segrun: ")]
    assert len(stops) == 3, text
    (whole,), (preempted,) = (tmp_path / "whole").iterdir(), (tmp_path / "preempted").iterdir()
    assert all(f"{preempted}: stopped at step " in line for line in stops)
    assert [line.split(" on ")[1].split(";")[0] for line in stops] == ["SIGTERM", "SIGTERM", "SIGUSR1"]
    assert stops[0].endswith("a requeued SLURM job resumes by itself; otherwise run the same command to resume")
    assert stops[2].endswith(f"SLURM job {job} is requeued and resumes from there")
    assert not list(preempted.rglob("hpc_ckpt*"))  # Lightning's own requeue checkpoints are off
    assert_same_end(RunFolder(whole), RunFolder(preempted))


def test_a_two_task_job_trains_with_ddp_and_validates_every_image_once(slurm, tmp_path):
    spec = write_tiny_spec(tmp_path, batch_size=2, width=96, epochs=1)
    job, log = submit(slurm, tmp_path, spec, "runs", "#SBATCH --ntasks-per-node=2\n#SBATCH --cpus-per-task=1",
                      "trainer.accelerator=cpu trainer.devices=2 trainer.strategy=ddp")
    final = slurm.wait_for(job, {"COMPLETED", "FAILED", "CANCELLED"})
    text = log.read_text()
    assert final["JobState"] == "COMPLETED" and "Traceback" not in text, text
    assert text.count("validation after epoch 0 ") == 1 and "GLOBAL_RANK: 1, MEMBER: 2/2" in text, text
    (run,) = (tmp_path / "runs").iterdir()
    distributed = json.loads((run / "metrics.json").read_text())["confusion_matrix"]
    assert main(["eval", str(run), "--out", str(tmp_path / "single.json"), "--no-progress"]) == 0
    assert distributed == json.loads((tmp_path / "single.json").read_text())["confusion_matrix"]


def wait_for_jobs(cluster, jobs, runs: Path) -> None:
    for job in jobs:
        state = cluster.wait_for(job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})["JobState"]
        logs = "\n".join(path.read_text() for path in (runs / "slurm").rglob(f"{job}*_log.*"))
        assert state == "COMPLETED", logs
        assert "Traceback" not in logs, logs


def test_submit_sends_seeds_as_an_array_and_skips_finished_members(slurm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    spec = write_tiny_spec(tmp_path, train_images=8, val_images=2, width=96, epochs=1)
    runs = tmp_path / "runs"
    one_at_a_time = ["--cpus-per-task", str(os.cpu_count()), "--time", "30"]
    assert main(["submit", str(spec), "--seeds", "2", "--runs", str(runs), *one_at_a_time]) == 0
    out = capsys.readouterr().out
    jobs = re.findall(r"^job (\S+): ", out, re.M)
    assert len(jobs) == 2 and len({job.split("_")[0] for job in jobs}) == 1, out  # one array of two
    wait_for_jobs(slurm, jobs, runs)
    finished = sorted(path.parent for path in runs.glob("tiny-*/metrics.json"))
    assert sorted(tomllib.loads((f / "spec.toml").read_text())["seed"] for f in finished) == [0, 1]

    assert main(["submit", str(spec), "--seeds", "2", "--runs", str(runs), *one_at_a_time]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(line.removeprefix("finished, not submitted: ") for line in out[:2]) == [str(f) for f in finished]
    assert out[2] == "nothing to submit: every member has finished"


def test_submit_sends_a_chains_stages_as_jobs_that_wait_for_the_stage_before(slurm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    write_tiny_spec(tmp_path, name="stage.toml", train_images=8, val_images=2, width=96, epochs=1)
    chain = tmp_path / "tiny_chain.toml"
    chain.write_text('name = "tinychain"\n[[stage]]\nname = "fine"\nspec = "stage.toml"\n'
                     '[[stage]]\nname = "more"\nspec = "stage.toml"\noverrides = ["optimizer.lr=0.001"]\n')
    runs = tmp_path / "runs"
    assert main(["submit", str(chain), "seed=3", "--runs", str(runs), "--cpus-per-task", str(os.cpu_count())]) == 0
    out = capsys.readouterr().out
    (first, second) = re.findall(r"^job (\S+): ", out, re.M)
    assert f"tiny_chain.toml seed=3 stage more (after job {first})" in out
    assert slurm.job(second)["Dependency"].startswith(f"afterok:{first.split('_')[0]}") or \
        slurm.job(second)["JobState"] != "PENDING"
    wait_for_jobs(slurm, [first, second], runs)
    (fine,), (more,) = runs.glob("tinychain-fine-*"), runs.glob("tinychain-more-*")
    assert tomllib.loads((more / "spec.toml").read_text())["seed"] == 3
    assert json.loads((more / "metrics.json").read_text())["init"]["path"] == str(
        RunFolder(fine).best_checkpoint().resolve())
