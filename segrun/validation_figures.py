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

def spread_indices(total: int, count: int) -> list[int]:
    """`count` indices spread evenly over range(total), first and last included (all when fewer)."""
    count = min(count, total)
    return [round(i * (total - 1) / max(count - 1, 1)) for i in range(max(count, 0))]


def _class_legend(figure, class_ids, class_names, palette) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=np.array(palette[c]) / 255, edgecolor="grey", label=class_names[c]) for c in class_ids]
    if handles:
        figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=8, frameon=False)


def examples_figure(image: np.ndarray, labels: np.ndarray, prediction: np.ndarray, class_names, palette):
    """image | ground truth | prediction, titled, with a legend of the classes in either (ignored
    pixels black)."""
    from matplotlib.figure import Figure

    present = sorted({int(c) for c in np.unique(np.concatenate([labels.ravel(), prediction.ravel()]))
                      if c < len(class_names)})
    legend_rows = -(-len(present) // 7)
    height = 3.0 * image.shape[0] / image.shape[1] * 1.1 + 0.4 + 0.25 * legend_rows
    figure = Figure(figsize=(10, height))
    for axes, panel, title in zip(figure.subplots(1, 3), (image, colour_labels(labels, palette),
                                                          colour_labels(prediction, palette)),
                                  ("image", "ground truth (black: ignored)", "prediction")):
        axes.imshow(panel)
        axes.set_title(title, fontsize=9)
        axes.axis("off")
    _class_legend(figure, present, class_names, palette)
    figure.tight_layout(rect=(0, 0.25 * legend_rows / height + 0.02, 1, 1))
    return figure


def attention_figure(attention: list[np.ndarray], scales):
    """The attention each scale gets (one panel per scale, lowest first), titled by scale, with a
    colour bar from 0 to 1."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.2 * len(attention) + 0.8, 3.2 * attention[0].shape[0] / attention[0].shape[1] + 0.6))
    panels = figure.subplots(1, len(attention), squeeze=False)[0]
    for axes, weights, scale in zip(panels, attention, scales):
        shown = axes.imshow(weights, vmin=0, vmax=1, cmap="viridis")
        axes.set_title(f"attention on the {scale:g}x prediction", fontsize=9)
        axes.axis("off")
    figure.colorbar(shown, ax=list(panels), fraction=0.03, label="attention (the scales sum to 1)")
    return figure


def confusion_figure(confusion: np.ndarray, class_names):
    """The confusion matrix of the classes in the ground truth or the predictions (the others would
    be empty rows and columns), each row (a true class) divided by its pixel count, as a figure."""
    from matplotlib.figure import Figure

    shown_classes = np.nonzero((confusion.sum(0) + confusion.sum(1)) > 0)[0]
    confusion = confusion[np.ix_(shown_classes, shown_classes)]
    names = [class_names[c] for c in shown_classes]
    normalised = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    size = max(5.0, 0.55 * len(names) + 2)
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
    shown = axes.imshow(normalised, vmin=0, vmax=1, cmap="Blues")
    ticks = range(len(names))
    axes.set_xticks(ticks, names, rotation=90, fontsize=8)
    axes.set_yticks(ticks, names, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true (each row sums to 1)")
    for true, predicted in zip(*np.nonzero(normalised >= 0.01)):
        value = normalised[true, predicted]
        axes.text(predicted, true, f"{value:.2f}", ha="center", va="center", fontsize=7,
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
        palette = trainer.datamodule.dataset.palette
        model = task.model
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            for index, image, viewable, labels in self._chosen_samples(trainer):
                batch = image.unsqueeze(0).to(task.device)
                prediction = task.predict(model, batch).argmax(1)[0].byte().cpu().numpy()
                board.add_figure(f"val/examples/{index}", examples_figure(viewable, labels, prediction,
                                                                          task.class_names, palette), step)
                if isinstance(model, ScaleFusingModel):
                    attention = model.scale_attention(batch, self.attention_scales)
                    board.add_figure(f"val/attention/{index}", attention_figure(
                        [a[0, 0].float().cpu().numpy() for a in attention], self.attention_scales), step)
