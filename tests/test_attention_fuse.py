"""attention_fuse against the formula with an independent, per-pixel bilinear resize."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import OPS_MODES, ops_mode
from segrun.ops import attention_fuse


def naive_bilinear(array: np.ndarray, height: int, width: int, align_corners: bool) -> np.ndarray:
    """Resize [N, C, h, w] with PyTorch's bilinear conventions, one output pixel at a time."""
    def source(index, size_in, size_out):
        if align_corners:
            position = index * (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        else:
            position = max((index + 0.5) * size_in / size_out - 0.5, 0.0)
        low = min(int(np.floor(position)), size_in - 1)
        high = min(low + 1, size_in - 1)
        return low, high, position - low

    out = np.zeros(array.shape[:2] + (height, width))
    for y in range(height):
        y0, y1, wy = source(y, array.shape[2], height)
        for x in range(width):
            x0, x1, wx = source(x, array.shape[3], width)
            top = array[:, :, y0, x0] * (1 - wx) + array[:, :, y0, x1] * wx
            bottom = array[:, :, y1, x0] * (1 - wx) + array[:, :, y1, x1] * wx
            out[:, :, y, x] = top * (1 - wy) + bottom * wy
    return out


@st.composite
def fuse_inputs(draw):
    n, c = draw(st.integers(1, 2)), draw(st.sampled_from([1, 3, 19]))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    factor = draw(st.sampled_from([1.0, 1.5, 2.0, 3.0]))
    height, width = max(1, round(h * factor)), max(1, round(w * factor))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    pred_hi = torch.randn(n, c, height, width, generator=generator, dtype=torch.float64)
    pred_lo = torch.randn(n, c, h, w, generator=generator, dtype=torch.float64)
    attn_lo = torch.rand(n, 1, h, w, generator=generator, dtype=torch.float64)
    return pred_hi, pred_lo, attn_lo, draw(st.booleans())


@pytest.mark.parametrize("mode", OPS_MODES)
@settings(max_examples=60, deadline=None)
@given(inputs=fuse_inputs())
def test_matches_the_formula(mode, inputs):
    pred_hi, pred_lo, attn_lo, align_corners = inputs
    height, width = pred_hi.shape[-2:]
    up = lambda t: naive_bilinear(t.numpy(), height, width, align_corners)
    expected = up(attn_lo * pred_lo) + (1 - up(attn_lo)) * pred_hi.numpy()
    with ops_mode(mode):
        fused = attention_fuse(pred_hi, pred_lo, attn_lo, align_corners=align_corners)
    np.testing.assert_allclose(fused.numpy(), expected, atol=1e-10)


def test_gradients_reach_all_three_inputs():
    inputs = [torch.randn(1, 2, 6, 8, dtype=torch.float64), torch.randn(1, 2, 3, 4, dtype=torch.float64),
              torch.rand(1, 1, 3, 4, dtype=torch.float64)]
    for tensor in inputs:
        tensor.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, c: attention_fuse(a, b, c, align_corners=False), inputs)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="attn_lo"):
        attention_fuse(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="differ in batch or classes"):
        attention_fuse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 2, 2))
