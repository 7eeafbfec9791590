import pytest
import torch

from segrun.optim import build_optimizer, lr_factor, optimization
from segrun.spec import OptimizerSpec, ScheduleSpec


def test_poly_decays_to_zero():
    spec = ScheduleSpec(power=0.9)
    assert lr_factor(0, 100, spec) == 1.0
    assert lr_factor(50, 100, spec) == pytest.approx(0.5 ** 0.9)
    assert lr_factor(100, 100, spec) == 0.0


def test_linear_warmup_then_poly():
    spec = ScheduleSpec(warmup_steps=10, warmup_start_factor=0.1)
    assert lr_factor(0, 100, spec) == pytest.approx(0.1)
    assert lr_factor(5, 100, spec) == pytest.approx(0.55)
    assert lr_factor(10, 100, spec) == pytest.approx(0.9 ** 0.9)
    assert lr_factor(10, 100, ScheduleSpec(name="constant", warmup_steps=10)) == 1.0


def test_optimizers_take_the_spec():
    parameters = [torch.nn.Parameter(torch.zeros(2))]
    sgd = build_optimizer(parameters, OptimizerSpec(lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["weight_decay"] == 5e-4
    adamw = build_optimizer(parameters, OptimizerSpec(name="adamw", lr=1e-3, betas=(0.8, 0.99)))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.8, 0.99)


def test_schedule_steps_per_iteration():
    parameter = torch.nn.Parameter(torch.zeros(1))
    config = optimization(OptimizerSpec(lr=1.0), ScheduleSpec(power=1.0))([parameter], 4)
    assert config["lr_scheduler"]["interval"] == "step"
    learning_rates = []
    for _ in range(4):
        learning_rates.append(config["optimizer"].param_groups[0]["lr"])
        config["optimizer"].step()
        config["lr_scheduler"]["scheduler"].step()
    assert learning_rates == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_a_fit_without_a_datamodule_schedules_over_lightnings_step_count():
    """Batches handed to fit directly (no SegmentationDataModule to count the steps): epochs are alike."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from segrun.task import SegmentationTask

    totals = []

    def configure(parameters, total_steps):
        totals.append(total_steps)
        return optimization(OptimizerSpec(lr=0.01), ScheduleSpec())(parameters, total_steps)

    class OneOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = torch.nn.Conv2d(3, 2, 1)

        def forward(self, images):
            return [self.classifier(images)]

    task = SegmentationTask(OneOutput(), losses=[torch.nn.CrossEntropyLoss()], loss_weights=[1.0], output_names=["main"],
                            num_classes=2, class_names=["a", "b"], ignore_index=255, configure_optimization=configure,
                            predict=lambda model, images: model(images)[0].softmax(1))
    batches = DataLoader(TensorDataset(torch.randn(6, 3, 4, 4), torch.randint(0, 2, (6, 4, 4))), batch_size=2)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, train_dataloaders=batches)
    assert totals == [6] and trainer.global_step == 6
