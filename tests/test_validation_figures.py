"""The pieces of the TensorBoard validation figures (the end-to-end test reads them from a run)."""
import numpy as np
import torch

from segrun.models import create
from segrun.validation_figures import spread_indices, strip


def test_images_are_spread_over_the_val_set_and_never_repeat():
    assert spread_indices(500, 4) == [0, 166, 333, 499]
    assert spread_indices(3, 4) == [0, 1, 2]
    assert spread_indices(10, 1) == [0]
    assert spread_indices(10, 0) == [] and spread_indices(0, 4) == []


def test_a_strip_puts_panels_side_by_side_with_white_between():
    panels = [np.zeros((5, 7, 3), np.uint8), np.ones((5, 3, 3), np.uint8)]
    joined = strip(panels)
    assert joined.shape == (5, 7 + 4 + 3, 3) and (joined[:, 7:11] == 255).all()


def test_ms_ocr_gives_each_scale_an_attention_map_at_the_input_size():
    model = create("hrnet_ocr_ms", 19, backbone="hrnet_w18_small").eval()
    with torch.no_grad():
        maps = model.scale_attention(torch.randn(1, 3, 64, 96), (0.5, 1.0))
    assert [tuple(m.shape) for m in maps] == [(1, 1, 64, 96)] * 2
    assert all(((m >= 0) & (m <= 1)).all() for m in maps)
