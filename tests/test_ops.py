import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import OPS_MODES, ops_mode
from segrun.ops import confusion_matrix


def naive_confusion(prediction, target, num_classes, ignore_index):
    counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for p, t in zip(prediction.flatten().tolist(), target.flatten().tolist()):
        if t != ignore_index and 0 <= t < num_classes and 0 <= p < num_classes:
            counts[t, p] += 1
    return counts


@st.composite
def batches(draw):
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    num_classes = draw(st.sampled_from([1, 2, 5, 19]))
    seed = draw(st.integers(0, 2**31 - 1))
    ignore_share = draw(st.sampled_from([0.0, 0.3, 1.0]))
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, (n, h, w), generator=generator)
    target[torch.rand(n, h, w, generator=generator) < ignore_share] = 255
    logits = torch.randn(n, num_classes, h, w, generator=generator)
    return logits, target, num_classes


@pytest.mark.parametrize("mode", OPS_MODES)
@settings(max_examples=60, deadline=None)
@given(batch=batches())
def test_confusion_matrix_matches_a_naive_loop(mode, batch):
    logits, target, num_classes = batch
    prediction = logits.argmax(1)
    expected = naive_confusion(prediction, target, num_classes, 255)
    with ops_mode(mode):
        from_logits = confusion_matrix(logits, target, num_classes)
        from_prediction = confusion_matrix(prediction, target, num_classes)
    assert from_logits.dtype == torch.int64 and from_logits.shape == (num_classes, num_classes)
    assert torch.equal(from_logits, expected)
    assert torch.equal(from_prediction, expected)


def test_rows_are_targets_columns_predictions_and_out_of_range_is_skipped():
    prediction = torch.tensor([[[0, 1, 1, 2]]])
    target = torch.tensor([[[1, 1, 255, 7]]])
    assert confusion_matrix(prediction, target, 3).tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 0]]


def test_ties_go_to_the_first_class_as_argmax():
    logits = torch.zeros(1, 3, 1, 2, dtype=torch.bfloat16)
    assert confusion_matrix(logits, torch.tensor([[[0, 2]]]), 3).tolist() == [[1, 0, 0], [0, 0, 0], [1, 0, 0]]
