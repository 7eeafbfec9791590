"""The LightningModule: a model, its per-output losses, mIoU on validation and under the test
protocol. Everything it needs is built from the spec elsewhere (segrun.build) and handed in."""
from typing import Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from segrun.metrics import MeanIoU, format_iou_table, scores_as_json
from segrun.progress import print_result


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss."""


class SegmentationTask(pl.LightningModule):
    def __init__(self, model: nn.Module, *, losses: list[nn.Module], loss_weights: list[float], output_names,
                 num_classes: int, class_names, ignore_index: int, configure_optimization: Callable[..., dict],
                 predict: Callable[[nn.Module, torch.Tensor], torch.Tensor], predict_is_forward: bool = False,
                 channels_last: bool = False,
                 test_predict: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.channels_last = channels_last  # batches follow the model's memory format
        self.model = model
        self.predict = predict  # (model, images) -> class scores, with the spec's [eval] options
        # predict is the softmax of the model's first output (one scale, no flip, no windows): validation
        # takes it from the forward its losses need, instead of running the model twice
        self.predict_is_forward = predict_is_forward
        self.output_names = tuple(output_names)  # of the model's outputs, in order (val/loss/<name>)
        self.test_predict = test_predict  # the same with its [test] options (trainer.test), if it has any
        self.losses = nn.ModuleList(losses)  # losses[i] applies to the model's output i
        self.loss_weights = loss_weights
        self.class_names = tuple(class_names)
        self.iou = MeanIoU(num_classes, ignore_index)  # of validation or test, whichever runs
        self.configure_optimization = configure_optimization
        self.last_val_scores: dict | None = None  # JSON form of the latest validation
        self.last_test_scores: dict | None = None  # and of the latest test
        self._finite: torch.Tensor | None = None  # whether this step's loss is finite (on the device)
        self._first_bad: torch.Tensor | None = None  # see _watch_finite

    def _in_layout(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.model(images)

    def training_step(self, batch, batch_index: int) -> torch.Tensor:
        images, target = batch
        outputs = self.model(self._in_layout(images))
        loss = sum(weight * criterion(output, target)
                   for weight, criterion, output in zip(self.loss_weights, self.losses, outputs))
        self._watch_finite(loss.detach())
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    # A non-finite loss is caught without a host-device synchronisation per step: the step is recorded
    # on the device, its gradients are zeroed there before the optimizer runs (no NaN reaches a weight;
    # momentum and weight decay still move them that step), and the run stops at the next point where
    # Lightning synchronises anyway (a logging step) or before anything is checkpointed (validation,
    # the end of an epoch or of training), so no checkpoint holds weights trained past the bad step.

    def _watch_finite(self, loss: torch.Tensor) -> None:
        if self._first_bad is None:  # (step, epoch, loss) of the first non-finite loss; step -1: none yet
            self._first_bad = torch.tensor([-1.0, 0.0, 0.0], device=loss.device, dtype=torch.float64)
        self._finite = torch.isfinite(loss)
        first = ~self._finite & (self._first_bad[0] < 0)
        here = torch.stack([torch.tensor(float(self.global_step), device=loss.device, dtype=torch.float64),
                            torch.tensor(float(self.current_epoch), device=loss.device, dtype=torch.float64),
                            loss.to(torch.float64)])
        self._first_bad = torch.where(first, here, self._first_bad)

    def on_before_optimizer_step(self, optimizer) -> None:
        if self._finite is not None:
            for parameter in self.parameters():
                if parameter.grad is not None:
                    parameter.grad.masked_fill_(~self._finite, 0.0)

    def _stop_if_a_loss_was_not_finite(self) -> None:
        if self._first_bad is None:
            return
        step, epoch, loss = self._first_bad.tolist()  # the one synchronisation
        if step >= 0:
            raise NonFiniteLoss(f"the training loss became {loss} at step {int(step)} (epoch {int(epoch)}); the last "
                                "good checkpoint is checkpoints/last.ckpt. Lower optimizer.lr, check the labels, or "
                                "set trainer.detect_anomaly = true to find the op")

    def on_train_batch_end(self, outputs, batch, batch_index: int) -> None:
        if (self.global_step % self.trainer.log_every_n_steps) == 0:
            self._stop_if_a_loss_was_not_finite()

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == TrainerFn.FITTING:
            self._stop_if_a_loss_was_not_finite()

    def on_train_epoch_end(self) -> None:  # before the last checkpoint is written
        self._stop_if_a_loss_was_not_finite()

    def on_train_end(self) -> None:
        self._stop_if_a_loss_was_not_finite()

    def validation_step(self, batch, batch_index: int) -> None:
        images, target = batch
        images = self._in_layout(images)
        outputs = self.model(images)
        losses = [criterion(output, target) for criterion, output in zip(self.losses, outputs)]
        for name, loss in zip(self.output_names, losses):
            self.log(f"val/loss/{name}", loss, sync_dist=True, batch_size=images.shape[0])
        self.log("val/loss", sum(weight * loss for weight, loss in zip(self.loss_weights, losses)), sync_dist=True,
                 batch_size=images.shape[0])
        scores = outputs[0].float().softmax(1) if self.predict_is_forward else self.predict(self.model, images)
        self.iou.update(scores, target)

    def test_step(self, batch, batch_index: int) -> None:
        images, target = batch
        self.iou.update(self.test_predict(self.model, self._in_layout(images)), target)

    def _scores(self, stage: str) -> dict:
        """The mIoU of what was predicted since the last call, logged under `stage`/ and as JSON."""
        scores = self.iou.compute()
        self.iou.reset()
        self.log(f"{stage}/mIoU", scores["mIoU"].float())
        self.log(f"{stage}/pixel_accuracy", scores["pixel_accuracy"].float())
        return {**scores_as_json(scores, self.class_names), "confusion_matrix": scores["confusion_matrix"].tolist()}

    def on_test_epoch_end(self) -> None:
        self.last_test_scores = self._scores("test")

    def on_validation_epoch_end(self) -> None:
        self.last_val_scores = self._scores("val")
        if self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking:
            print_result(f"\nvalidation after epoch {self.current_epoch} (step {self.global_step}):\n"
                         + format_iou_table(self.last_val_scores))

    def configure_optimizers(self) -> dict:
        datamodule = self.trainer.datamodule
        if datamodule is None:  # batches handed to fit directly: epochs alike, Lightning's estimate is exact
            total_steps = int(self.trainer.estimated_stepping_batches)
        else:  # a SegmentationDataModule, which counts the steps of epochs that differ in length too
            total_steps = datamodule.total_train_steps(self.trainer.accumulate_grad_batches)
        if self.trainer.max_steps > 0:
            total_steps = min(total_steps, self.trainer.max_steps)
        return self.configure_optimization(self.parameters(), total_steps)
