"""The pieces of the TensorBoard validation figures (the end-to-end test reads them from a run)."""
import numpy as np
import torch

from segrun.models import create
from segrun.validation_figures import attention_figure, confusion_figure, examples_figure, spread_indices


def test_images_are_spread_over_the_val_set_and_never_repeat():
    assert spread_indices(500, 4) == [0, 166, 333, 499]
    assert spread_indices(3, 4) == [0, 1, 2]
    assert spread_indices(10, 1) == [0]
    assert spread_indices(10, 0) == [] and spread_indices(0, 4) == []


NAMES = ["road", "sidewalk", "building", "wall"]
PALETTE = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156)]


def test_an_example_names_its_panels_and_the_classes_it_shows():
    labels = np.zeros((32, 48), np.uint8)
    labels[:, 24:] = 2
    labels[0] = 255  # ignored
    prediction = np.full((32, 48), 1, np.uint8)
    figure = examples_figure(np.zeros((32, 48, 3), np.uint8), labels, prediction, NAMES, PALETTE)
    assert [axes.get_title() for axes in figure.axes] == ["image", "ground truth (black: ignored)", "prediction"]
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["road", "sidewalk", "building"]  # not wall


def test_the_confusion_matrix_shows_the_classes_present_with_legible_numbers():
    confusion = np.zeros((4, 4), np.int64)
    confusion[0, 0], confusion[0, 2], confusion[2, 2] = 90, 10, 50  # sidewalk and wall absent
    axes = confusion_figure(confusion, NAMES).axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == ["road", "building"]
    assert sorted(text.get_text() for text in axes.texts) == ["0.10", "0.90", "1.00"]
    assert min(text.get_fontsize() for text in axes.texts) >= 7


def test_the_attention_panels_name_their_scales_and_share_a_colour_bar():
    figure = attention_figure([np.full((16, 24), 0.25), np.full((16, 24), 0.75)], (0.5, 1.0))
    titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
    assert titles == ["attention on the 0.5x prediction", "attention on the 1x prediction"]
    assert any(axes.get_ylabel() == "attention (the scales sum to 1)" for axes in figure.axes)  # the colour bar


def test_ms_ocr_gives_each_scale_an_attention_map_at_the_input_size():
    model = create("hrnet_ocr_ms", 19, backbone="hrnet_w18_small").eval()
    with torch.no_grad():
        maps = model.scale_attention(torch.randn(1, 3, 64, 96), (0.5, 1.0))
    assert [tuple(m.shape) for m in maps] == [(1, 1, 64, 96)] * 2
    assert all(((m >= 0) & (m <= 1)).all() for m in maps)
