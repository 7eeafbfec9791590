"""Fast defaults: "auto" precision and memory format per machine, layout equivalence of every
model, loss and op, mixed-precision safety, and bf16 training that tracks float32."""
import csv
import json

import attrs
import pytest
import torch

from conftest import logged_losses
from segrun import losses, models, ops
from segrun.cli import main
from segrun.errors import UserError
from segrun.resolve import resolve_trainer
from segrun.spec.schema import TrainerSpec


@pytest.mark.parametrize("cuda, bf16, accelerator, expected", [
    (False, False, "auto", ("32", "contiguous")),
    (True, True, "auto", ("bf16-mixed", "channels_last")),
    (True, False, "gpu", ("16-mixed", "channels_last")),
    (True, True, "cpu", ("32", "contiguous")),  # the CPU was asked for
])
def test_auto_resolves_per_device(monkeypatch, cuda, bf16, accelerator, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    resolved = resolve_trainer(TrainerSpec(accelerator=accelerator))
    assert (resolved.precision, resolved.memory_format) == expected
    explicit = resolve_trainer(TrainerSpec(accelerator=accelerator, precision="32", memory_format="channels_last"))
    assert (explicit.precision, explicit.memory_format) == ("32", "channels_last")


def test_fp16_autocast_on_the_cpu_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r'trainer\.precision = "16-mixed" on the CPU: .*95 s.*use "bf16-mixed"'):
        resolve_trainer(TrainerSpec(precision="16-mixed"))


@pytest.mark.parametrize("name", list(models.MODELS))
def test_every_model_gives_the_same_outputs_in_channels_last(name):
    torch.manual_seed(0)
    model = models.create(name, 5, backbone=models.smallest_backbone(name)).eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = model(images)
        model = model.to(memory_format=torch.channels_last)
        outputs = model(images.contiguous(memory_format=torch.channels_last))
    assert len(outputs) == len(expected)
    for output, reference in zip(outputs, expected):
        torch.testing.assert_close(output, reference, rtol=1e-4, atol=1e-4)


def _loss(name, num_classes=4):
    weights = [1.0, 1.5, 0.5, 2.0] if losses.LOSSES[name].takes_class_weights else None
    return losses.create(name, num_classes, class_weights=weights)


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_every_loss_gives_the_same_value_and_gradient_in_channels_last(name):
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 24, 30, generator=generator)
    target = torch.randint(0, 4, (2, 24, 30), generator=generator)
    target[:, :3] = 255
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        leaf = logits.clone().contiguous(memory_format=layout).requires_grad_(True)
        loss = _loss(name)(leaf, target)
        (grad,) = torch.autograd.grad(loss, leaf)
        results.append((loss.detach(), grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_every_loss_computes_in_float32_from_bf16_logits_under_autocast(name):
    generator = torch.Generator().manual_seed(2)
    logits = (torch.randn(2, 4, 24, 30, generator=generator) * 8).to(torch.bfloat16).requires_grad_(True)
    target = torch.randint(0, 4, (2, 24, 30), generator=generator)
    target[:, :3] = 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _loss(name)(logits, target)
    (grad,) = torch.autograd.grad(loss, logits)
    # The same bf16 values as float32 logits, without autocast: a loss computed in bf16 (8 bits of
    # mantissa, about 0.4% per value) and then cast to float32 is far outside these tolerances.
    exact = logits.detach().float().requires_grad_(True)
    expected = _loss(name)(exact, target)
    (expected_grad,) = torch.autograd.grad(expected, exact)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad.float(), expected_grad.to(torch.bfloat16).float(), rtol=0, atol=0)


@pytest.mark.parametrize("op", ["confusion_matrix", "attention_fuse", "rmi_lower_bound"])
def test_ops_fallbacks_agree_across_layouts(op):
    generator = torch.Generator().manual_seed(3)
    if op == "rmi_lower_bound":
        labels = (torch.rand(2, 3, 8, 9, generator=generator) > 0.5).float()
        probs = torch.rand(2, 3, 8, 9, generator=generator)
        channels_last = [t.contiguous(memory_format=torch.channels_last) for t in (labels, probs)]
        torch.testing.assert_close(ops.TORCH_OPS[op](*channels_last), ops.TORCH_OPS[op](labels, probs))
        return
    if op == "confusion_matrix":
        logits = torch.randn(2, 5, 9, 11, generator=generator)
        target = torch.randint(0, 5, (2, 9, 11), generator=generator)
        assert torch.equal(ops.TORCH_OPS[op](logits.contiguous(memory_format=torch.channels_last), target, 5),
                           ops.TORCH_OPS[op](logits, target, 5))
        return
    tensors = [torch.randn(2, 3, 10, 12, generator=generator), torch.randn(2, 3, 5, 6, generator=generator),
               torch.rand(2, 1, 5, 6, generator=generator)]
    layout = [t.contiguous(memory_format=torch.channels_last) for t in tensors]
    torch.testing.assert_close(ops.TORCH_OPS[op](*layout), ops.TORCH_OPS[op](*tensors))


def _losses_and_miou(folder):
    return [loss for _, loss in logged_losses(folder)], json.loads((folder / "metrics.json").read_text())


def test_bf16_training_tracks_float32(tmp_path, tiny_spec):
    path = tiny_spec(epochs=4, val_images=12)
    results = {}
    for precision in ("32", "bf16-mixed"):
        runs = tmp_path / precision
        assert main([str(path), f'trainer.precision="{precision}"', "--runs", str(runs), "--no-progress"]) == 0
        (folder,) = runs.iterdir()
        results[precision] = _losses_and_miou(folder)
    (curve32, metrics32), (curve16, metrics16) = results["32"], results["bf16-mixed"]
    assert metrics16["trainer"]["precision"] == "bf16-mixed" and metrics32["trainer"]["precision"] == "32"
    assert len(curve16) == len(curve32) >= 10
    gaps = [abs(a - b) / max(abs(a), 1e-3) for a, b in zip(curve32, curve16)]
    # bf16 was applied: float32 twice gives the same curve to the last bit (the runs are seeded)
    assert max(gaps) > 1e-3, gaps
    # bf16 keeps 8 bits of mantissa: measured here, the worst step differed by 11%, the mean by 2%,
    # and mIoU by 0.02.
    assert max(gaps) < 0.3 and sum(gaps) / len(gaps) < 0.1, gaps
    assert abs(metrics16["mIoU"] - metrics32["mIoU"]) < 0.05, (metrics16["mIoU"], metrics32["mIoU"])


def test_trainer_keys_reach_the_run(tmp_path, tiny_spec, capsys):
    path = tiny_spec(epochs=1)
    assert main([str(path), 'trainer.memory_format="channels_last"', "trainer.max_steps=2", "--runs",
                 str(tmp_path / "runs"), "--no-progress"]) == 0
    assert "memory_format channels_last" in capsys.readouterr().out
    (folder,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["trainer"] == {"precision": "32", "memory_format": "channels_last", "compile": False}
    assert 'memory_format = "channels_last"' in (folder / "spec.toml").read_text()
    assert attrs.fields_dict(TrainerSpec)["compile"].default is False


def test_a_run_trained_in_fp16_on_a_gpu_evaluates_on_the_cpu_in_float32(tmp_path, tiny_spec):
    path = tiny_spec(epochs=1)
    assert main([str(path), "trainer.max_steps=2", "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert main(["eval", str(folder), "--out", str(tmp_path / "as_trained.json"), "--no-progress"]) == 0
    spec_file = folder / "spec.toml"  # as a GPU machine would have written it
    spec_file.write_text(spec_file.read_text().replace('precision = "32"', 'precision = "16-mixed"'))
    assert main(["eval", str(folder), "--no-progress"]) == 0
    as_trained = json.loads((tmp_path / "as_trained.json").read_text())
    evaluated = json.loads((folder / "eval.json").read_text())
    # float32 on the CPU: the same pixels as the run's own float32 evaluation, not fp16's
    assert evaluated["confusion_matrix"] == as_trained["confusion_matrix"] and evaluated["mIoU"] == as_trained["mIoU"]


def test_trainer_compile_keeps_the_checkpoint_keys(tiny_spec):
    from segrun import build

    path = tiny_spec()
    plain = build.task(build.load_spec(path), load_weights=False).state_dict()
    compiled = build.task(build.load_spec(path, ["trainer.compile=true"]), load_weights=False).state_dict()
    assert list(compiled) == list(plain) and not any("_orig_mod" in key for key in compiled)


def test_trainer_pass_throughs_change_the_run(tmp_path, tiny_spec):
    """eval.every_n_epochs, trainer.accumulate_grad_batches, trainer.gradient_clip_val and
    trainer.deterministic reach Lightning's Trainer and act on the training."""
    path = tiny_spec(epochs=2, train_images=8, batch_size=2)  # 4 batches an epoch
    overrides = ["eval.every_n_epochs=2", "trainer.accumulate_grad_batches=2", "trainer.gradient_clip_val=1e-12",
                 "optimizer.weight_decay=0", "trainer.deterministic=true", "--runs", str(tmp_path / "runs")]
    try:
        assert main([str(path), *overrides, "--no-progress"]) == 0
        assert torch.are_deterministic_algorithms_enabled()  # what trainer.deterministic asks of torch
    finally:
        torch.use_deterministic_algorithms(False)
    (folder,) = (tmp_path / "runs").iterdir()
    last = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 4  # 2 epochs of 4 batches, one optimizer step per 2 batches
    with open(next(folder.glob("logs/csv/version_0/metrics.csv"))) as file:
        validated = {row["epoch"] for row in csv.DictReader(file) if row.get("val/mIoU")}
    # while fitting every second epoch, only the last (1); then the best checkpoint's (logged as epoch 2)
    assert validated == {"1", "2"}
    # gradients clipped to a norm of 1e-12 (no weight decay): no weight moved beyond float32 rounding
    # (measured 3.7e-8; unclipped, the same run moves a weight by up to 7.8e-3)
    import pytorch_lightning as pl

    from segrun import build

    pl.seed_everything(0, workers=True, verbose=False)  # as the run did before building its model
    start = build.task(build.load_spec(path), load_weights=False).state_dict()
    moved = max(float((last["state_dict"][key] - value).abs().max()) for key, value in start.items()
                if value.is_floating_point() and "running" not in key)
    assert moved < 1e-6, moved
