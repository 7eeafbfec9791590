"""Strategy 1: the coarse share per epoch falls linearly from all to none."""
import csv

import pytest

from segrun.build import load_spec
from segrun.cli import main
from segrun.data.sampling import (
    CoarseDecaySampler,
    coarse_count,
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
