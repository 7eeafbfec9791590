"""Strategy 1: the coarse share per epoch falls linearly from all to none, by the run's last epoch or
by data.coarse_decay_epochs (the study's 360 of 400); and train samplers that resume mid-epoch."""
import csv
from types import SimpleNamespace

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from segrun import build
from segrun.build import load_spec
from segrun.cli import main
from segrun.data.datamodule import ensure_dataset
from segrun.data.sampling import (
    CoarseDecaySampler,
    ResumableSampler,
    coarse_count,
    coarse_share,
    epoch_indices,
    optimizer_steps,
)
from segrun.spec import SpecError


def test_coarse_share_falls_linearly_from_all_to_none():
    assert [coarse_count(e, 5, 100) for e in range(5)] == [100, 75, 50, 25, 0]
    assert [coarse_count(e, 3, 7) for e in range(3)] == [7, 4, 0]  # round(3.5) = 4
    assert coarse_count(0, 1, 10) == 10


def test_every_fine_sample_each_epoch_and_the_scheduled_coarse_subset():
    fine, coarse = list(range(10)), list(range(10, 30))
    for epoch in range(5):
        indices = epoch_indices(fine, coarse, epoch, 5, seed=0)
        assert sorted(i for i in indices if i < 10) == fine
        chosen = [i for i in indices if i >= 10]
        assert len(chosen) == coarse_count(epoch, 5, 20) and len(set(chosen)) == len(chosen)
    assert epoch_indices(fine, coarse, 1, 5, seed=0) == epoch_indices(fine, coarse, 1, 5, seed=0)
    assert epoch_indices(fine, coarse, 1, 5, seed=0) != epoch_indices(fine, coarse, 1, 5, seed=1)
    sampler = CoarseDecaySampler(fine, coarse, 1, 5, seed=0)
    assert list(sampler) == epoch_indices(fine, coarse, 1, 5, seed=0) and len(sampler) == 10 + 15
    assert optimizer_steps(sampler.epoch_lengths(), 4, 1) == sum((10 + c) // 4 for c in (20, 15, 10, 5, 0))
    assert optimizer_steps(sampler.epoch_lengths(), 4, 2) == sum(-(-((10 + c) // 4) // 2) for c in (20, 15, 10, 5, 0))


def test_under_ddp_each_process_takes_an_equal_share_of_the_epoch():
    fine, coarse = list(range(7)), list(range(7, 12))
    shares = [list(CoarseDecaySampler(fine, coarse, 0, 3, seed=2, world_size=2, rank=rank)) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 6 and not set(shares[0]) & set(shares[1])
    assert shares[0] + shares[1] == epoch_indices(fine, coarse, 0, 3, seed=2)[:12]


def test_the_decay_horizon_gives_the_study_s_share_exactly():
    # The study's policy: START_PORTION * np.maximum(1 - current_epoch / (MAX_COARSE_EPOCH - 1), 0), with
    # START_PORTION 1.0 and MAX_COARSE_EPOCH 360, over 400 epochs; it draws int(share * 19,997) coarse images.
    for epoch in range(400):
        study_share = 1.0 * np.maximum(1 - epoch / (360 - 1), 0)
        assert coarse_share(epoch, 360) == study_share
        assert abs(coarse_count(epoch, 360, 19_997) - int(study_share * 19_997)) <= 1
    assert coarse_count(358, 360, 19_997) > 0 and coarse_count(359, 360, 19_997) == 0
    fine, coarse = list(range(10)), list(range(10, 30))
    sampler = CoarseDecaySampler(fine, coarse, 0, 6, seed=0, decay_epochs=3)
    assert sampler.epoch_lengths() == [30, 20, 10, 10, 10, 10]  # none from epoch 2 on, while the run goes on
    assert CoarseDecaySampler(fine, coarse, 0, 5, seed=0).epoch_lengths() == [30, 25, 20, 15, 10]  # default: the run's


def test_the_decay_horizon_reaches_the_sampler_from_the_spec(tiny_spec):
    loaded = load_spec(tiny_spec(dataset="cityscapes_fine_coarse", train_images=2, val_images=1, epochs=400),
                       ['data.coarse_schedule="linear_decay"', "data.coarse_decay_epochs=360"])
    assert loaded.data.coarse_decay_epochs == 360
    ensure_dataset(loaded.data, progress=False)
    datamodule = build.datamodule(loaded)
    datamodule.trainer = SimpleNamespace(current_epoch=0, max_epochs=400)
    datamodule.setup("fit")
    sampler = datamodule._train_sampler()
    assert (sampler.epochs, sampler.decay_epochs) == (400, 360) and len(sampler) == 4
    assert datamodule.total_train_steps(1) == optimizer_steps(
        [2 + coarse_count(epoch, 360, 2) for epoch in range(400)], loaded.data.batch_size, 1)


@pytest.mark.parametrize("overrides, problem", [
    (["data.coarse_decay_epochs=360"], r'coarse_decay_epochs: only data\.coarse_schedule = "linear_decay" decays'),
    (['data.coarse_schedule="linear_decay"', "data.coarse_decay_epochs=1"], r"coarse_decay_epochs: expected a number >= 2"),
])
def test_the_decay_horizon_is_checked(tiny_spec, overrides, problem):
    with pytest.raises(SpecError, match=problem):
        load_spec(tiny_spec(dataset="cityscapes_fine_coarse"), overrides)


def test_the_schedule_needs_a_dataset_that_mixes_fine_and_coarse(tiny_spec):
    with pytest.raises(SpecError, match=r"data\.coarse_schedule: dataset cityscapes does not mix fine and coarse"):
        load_spec(tiny_spec(), ['data.coarse_schedule="linear_decay"'])


@pytest.mark.parametrize("schedule, steps_per_epoch", [
    ("linear_decay", [4, 3, 2]),  # (4 fine + 4, 2, 0 coarse) / batch 2
    ("all", [4, 4, 4]),
])
def test_a_run_takes_its_schedules_steps_per_epoch_and_the_lr_spans_them(tiny_spec, tmp_path, schedule, steps_per_epoch):
    path = tiny_spec(dataset="cityscapes_fine_coarse", batch_size=2, train_images=4, val_images=2, width=96, epochs=3)
    assert main([str(path), f'data.coarse_schedule="{schedule}"', "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    (log,) = (tmp_path / "runs").glob("tiny-*/logs/csv/version_0/metrics.csv")
    with open(log) as file:
        rows = list(csv.DictReader(file))
    losses = [row for row in rows if row.get("train/loss")]
    assert [sum(1 for row in losses if row["epoch"] == str(epoch)) for epoch in range(3)] == steps_per_epoch
    learning_rates = [float(row["lr-AdamW"]) for row in rows if row.get("lr-AdamW")]
    # The poly schedule spans the steps that ran (9 with the decay): the last uses lr x (1 - 8/9) ** 0.9.
    total = sum(steps_per_epoch)
    assert learning_rates[0] == pytest.approx(0.003) and learning_rates[-1] == pytest.approx(0.003 * (1 / total) ** 0.9)


@pytest.mark.parametrize("order", [
    lambda: DistributedSampler(range(20), num_replicas=2, rank=1, shuffle=True, seed=3, drop_last=True),
    lambda: CoarseDecaySampler(list(range(12)), list(range(12, 30)), 0, 6, seed=3, world_size=2, rank=1),
], ids=["shuffled", "coarse_decay"])
def test_a_resumed_sampler_continues_the_epoch_it_stopped_in(order):
    running = ResumableSampler(order(), batch_size=2, trained_batches=lambda: 3)
    running.set_epoch(4)
    state = running.state_dict()
    assert state == {"epoch": 4, "batches": 3, "seed": 3}
    resumed = ResumableSampler(order(), batch_size=2, trained_batches=lambda: 0)  # a new process: epoch 0
    resumed.load_state_dict(state)
    assert len(resumed) == len(running)  # Lightning counts the epoch's batches from it
    assert list(resumed) == list(running)[6:]  # the rest of epoch 4, in its order
    assert list(resumed) == list(running)  # then whole passes again


def test_a_sampler_stopped_at_the_end_of_an_epoch_skips_nothing():
    running = ResumableSampler(DistributedSampler(range(9), num_replicas=1, rank=0, seed=0, drop_last=True), 2,
                               trained_batches=lambda: 4)  # 4 whole batches of 9 samples: the epoch is done
    resumed = ResumableSampler(DistributedSampler(range(9), num_replicas=1, rank=0, seed=0, drop_last=True), 2,
                               trained_batches=lambda: 0)
    resumed.load_state_dict(running.state_dict())
    assert len(list(resumed)) == 9
