import numpy as np
import pytest
import torch

from segrun import losses


def load_case(folder, case):
    data = np.load(folder / "losses" / f"{case}.npz")
    return {key: data[key] for key in data.files}


@pytest.mark.parametrize("case", ["a", "b", "c", "d"])
@pytest.mark.parametrize("name", ["ce", "wce"])
def test_matches_reference_loss_and_gradient(reference, case, name):
    data = load_case(reference, case)
    logits = torch.tensor(data["logits"], requires_grad=True)
    weights = data["class_weights"].tolist() if name == "wce" else None
    loss = losses.create(name, logits.shape[1], class_weights=weights)(logits, torch.tensor(data["labels"]))
    loss.backward()
    expected_loss, expected_grad = data[f"{name}_loss"], data[f"{name}_grad"]
    assert float(loss.detach()) == pytest.approx(float(expected_loss), rel=1e-5)
    assert torch.allclose(logits.grad, torch.tensor(expected_grad), rtol=0, atol=1e-4 * np.abs(expected_grad).max())


def test_named_class_weights():
    loss = losses.create("wce", 19, class_weights="cityscapes")
    assert loss.class_weights.shape == (19,) and float(loss.class_weights[0]) == pytest.approx(0.8373)


@pytest.mark.parametrize("name, weights", [("ce", None), ("wce", [1.0, 2.0, 3.0])])
def test_all_ignored_batch_gives_zero_not_nan(name, weights):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = losses.create(name, 3, class_weights=weights)(logits, torch.full((2, 4, 4), 255))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_create_checks_weights():
    with pytest.raises(ValueError, match="needs 3 class weights"):
        losses.create("wce", 3, class_weights=[1.0])
    with pytest.raises(ValueError, match="takes no class weights"):
        losses.create("ce", 3, class_weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="unknown loss 'dice'"):
        losses.create("dice", 3)
