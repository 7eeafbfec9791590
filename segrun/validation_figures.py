"""What TensorBoard shows of each validation during training, beside the scalars: a fixed set of
validation images as image | ground truth | prediction in the dataset's palette, the attention
each scale gets for a scale-fusing model (hrnet_ocr_ms), and the normalised confusion matrix."""
from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn

from segrun.data.preview import colour_labels, viewable_image
from segrun.models.base import ScaleFusingModel
from segrun.models.mscale import TRAIN_LOW_SCALE

SEPARATOR = 4  # white pixels between the panels of a strip


def spread_indices(total: int, count: int) -> list[int]:
    """`count` indices spread evenly over range(total), first and last included (all when fewer)."""
    count = min(count, total)
    return [round(i * (total - 1) / max(count - 1, 1)) for i in range(max(count, 0))]


def strip(panels: list[np.ndarray]) -> np.ndarray:
    """uint8 RGB panels [H, W, 3] of one height side by side, white between them."""
    gap = np.full((panels[0].shape[0], SEPARATOR, 3), 255, np.uint8)
    return np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)


def attention_colours(attention: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] of attention in [0, 1] (viridis: dark blue 0, yellow 1)."""
    from matplotlib import colormaps

    return (colormaps["viridis"](attention)[..., :3] * 255).astype(np.uint8)


def confusion_figure(confusion: np.ndarray, class_names):
    """The confusion matrix with each row (a true class) divided by its pixel count, as a figure."""
    from matplotlib.figure import Figure

    rows = confusion.sum(1, keepdims=True)
    normalised = confusion / np.maximum(rows, 1)
    size = max(6.0, 0.4 * len(class_names))
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
    shown = axes.imshow(normalised, vmin=0, vmax=1, cmap="Blues")
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=90, fontsize=7)
    axes.set_yticks(ticks, class_names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true (each row sums to 1)")
    if len(class_names) <= 20:  # numbers stay legible
        for true, predicted in zip(*np.nonzero(normalised >= 0.01)):
            value = normalised[true, predicted]
            axes.text(predicted, true, f"{value:.2f}", ha="center", va="center", fontsize=5,
                      color="white" if value > 0.5 else "black")
    figure.colorbar(shown, ax=axes, fraction=0.046)
    figure.tight_layout()
    return figure


class ValidationFigures(pl.Callback):
    """Logs to the TensorBoard logger after each validation while fitting (not the sanity check):
    val/examples/<i> for `count` validation images chosen once, spread evenly over the val set;
    val/attention/<i> for a scale-fusing model (one panel per scale of `attention_scales`, lowest
    first); val/confusion_matrix."""

    def __init__(self, count: int, viewable_val: Callable[[], torch.utils.data.Dataset], attention_scales=None):
        self.count = count
        self.viewable_val = viewable_val  # the val set without Normalize, for display
        self.attention_scales = tuple(sorted(attention_scales or (TRAIN_LOW_SCALE, 1.0)))
        self.samples: list[tuple[int, torch.Tensor, np.ndarray, np.ndarray]] | None = None  # index, input, image, labels

    def _chosen_samples(self, trainer: pl.Trainer) -> list:
        if self.samples is None:
            val_set = trainer.datamodule.val_set
            viewable = self.viewable_val()
            self.samples = []
            for index in spread_indices(len(val_set), self.count):
                image, labels = val_set[index]
                self.samples.append((index, image, viewable_image(viewable[index][0]), labels.numpy().astype(np.uint8)))
        return self.samples

    def on_validation_end(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None or task.last_val_scores is None:
            return
        board, step = logger.experiment, trainer.global_step
        board.add_figure("val/confusion_matrix", confusion_figure(np.array(task.last_val_scores["confusion_matrix"]),
                                                                  task.class_names), step)
        if not self.count or trainer.datamodule is None:  # none asked for, or no val set to pick them from
            return
        palette = trainer.datamodule.dataset_class.palette
        model = task.model
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            for index, image, viewable, labels in self._chosen_samples(trainer):
                batch = image.unsqueeze(0).to(task.device)
                prediction = task.predict(model, batch).argmax(1)[0].byte().cpu().numpy()
                board.add_image(f"val/examples/{index}", strip([viewable, colour_labels(labels, palette),
                                                                colour_labels(prediction, palette)]), step,
                                dataformats="HWC")
                if isinstance(model, ScaleFusingModel):
                    attention = model.scale_attention(batch, self.attention_scales)
                    board.add_image(f"val/attention/{index}", strip([attention_colours(a[0, 0].float().cpu().numpy())
                                                                     for a in attention]), step, dataformats="HWC")
