import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import OPS_MODES, ops_mode
from segrun import losses
from segrun.losses import LOSSES, OptionError, option_names
from segrun.ops import rmi_lower_bound

WEIGHTED = {"wce", "wrmi"}
# dc_topk: the original counts ignored pixels as class 0 in its TopK part, segrun masks them, so
# only case d (no ignored pixels) compares (tests/reference/README.md).
CASES = [(name, case) for name in LOSSES for case in "abcd" if name != "dc_topk" or case == "d"]


def load_case(folder, case):
    data = np.load(folder / "losses" / f"{case}.npz")
    return {key: data[key] for key in data.files}


def make(name, num_classes, weights=None):
    if name in WEIGHTED:
        weights = weights if weights is not None else [1.0 + 0.1 * c for c in range(num_classes)]
        return losses.create(name, num_classes, class_weights=weights)
    return losses.create(name, num_classes)


@pytest.mark.parametrize("mode", OPS_MODES)
@pytest.mark.parametrize("name, case", CASES)
def test_matches_reference_loss_and_gradient(reference, name, case, mode):
    data = load_case(reference, case)
    logits = torch.tensor(data["logits"], requires_grad=True)
    with ops_mode(mode):
        loss = make(name, logits.shape[1], data["class_weights"].tolist())(logits, torch.tensor(data["labels"]))
        loss.backward()
    expected_loss, expected_grad = data[f"{name}_loss"], data[f"{name}_grad"]
    assert float(loss.detach()) == pytest.approx(float(expected_loss), rel=1e-5)
    assert torch.allclose(logits.grad, torch.tensor(expected_grad), rtol=0, atol=1e-4 * np.abs(expected_grad).max())


@pytest.mark.parametrize("case", "abcd")
def test_dc_topk_with_ignored_as_class_zero_matches_the_original_on_every_case(reference, case):
    data = load_case(reference, case)
    logits = torch.tensor(data["logits"], requires_grad=True)
    loss = losses.create("dc_topk", logits.shape[1], ignored_as_class_zero=True)(logits, torch.tensor(data["labels"]))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(float(data["dc_topk_loss"]), rel=1e-5)
    expected_grad = data["dc_topk_grad"]
    assert torch.allclose(logits.grad, torch.tensor(expected_grad), rtol=0, atol=1e-4 * np.abs(expected_grad).max())


def test_rmi_lower_bound_gradients_in_float64():
    generator = torch.Generator().manual_seed(0)
    labels = (torch.rand(2, 3, 6, 7, generator=generator) > 0.5).double()
    probs = (torch.rand(2, 3, 6, 7, generator=generator, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: rmi_lower_bound(labels, p), (probs,))


def naive_rmi_lower_bound(labels, probs, radius=3, alpha=5e-4):
    """The original formulation: stacked shifted copies, matmuls, an explicit inverse."""
    height, width = labels.shape[-2] - radius + 1, labels.shape[-1] - radius + 1
    def stack(maps):
        views = [maps[..., y:y + height, x:x + width] for y in range(radius) for x in range(radius)]
        vectors = torch.stack(views, dim=2).flatten(3).double()
        return vectors - vectors.mean(dim=3, keepdim=True)
    la, pr = stack(labels), stack(probs)
    eye = torch.eye(radius * radius, dtype=torch.float64)
    pr_cov_inv = torch.inverse(pr @ pr.transpose(2, 3) + alpha * eye)
    la_pr = la @ pr.transpose(2, 3)
    conditional = la @ la.transpose(2, 3) - la_pr @ pr_cov_inv @ la_pr.transpose(2, 3)
    chol = torch.linalg.cholesky(conditional + alpha * eye)
    log_det = 2 * torch.log(chol.diagonal(dim1=-2, dim2=-1) + 1e-8).sum(-1)
    return (0.5 * log_det).mean(0) / (radius * radius)


@pytest.mark.parametrize("mode", OPS_MODES)
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 4), h=st.integers(3, 9), w=st.integers(3, 9), radius=st.integers(2, 3),
       seed=st.integers(0, 2**31 - 1))
def test_rmi_lower_bound_matches_the_original_formulation(mode, n, c, h, w, radius, seed):
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, c, h, w, generator=generator) > 0.6).float()
    probs = torch.rand(n, c, h, w, generator=generator)
    with ops_mode(mode):
        lower_bound = rmi_lower_bound(labels, probs, radius)
    torch.testing.assert_close(lower_bound, naive_rmi_lower_bound(labels, probs, radius).float(), rtol=1e-5, atol=1e-5)


def test_named_class_weights():
    loss = losses.create("wce", 19, class_weights="cityscapes")
    assert loss.class_weights.shape == (19,) and float(loss.class_weights[0]) == pytest.approx(0.8373)


def degenerate_batches():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 24, 24, generator=generator)
    labels = torch.randint(0, 4, (2, 24, 24), generator=generator)
    single_class = torch.full_like(labels, 2)
    absent_class = labels.clone()
    absent_class[absent_class == 3] = 1
    return {
        "all ignored": (logits, torch.full_like(labels, 255)),
        "single class": (logits, single_class),
        "saturated logits": (torch.where(logits > 0, 50.0, -50.0), labels),
        "saturated, right and wrong": (50.0 * torch.nn.functional.one_hot(single_class, 4).permute(0, 3, 1, 2).float(), labels),
        "absent class": (logits, absent_class),
    }


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("case", list(degenerate_batches()))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_degenerate_batches_give_finite_loss_and_gradient(name, case, autocast):
    logits, labels = degenerate_batches()[case]
    logits = logits.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = make(name, 4)(logits * 1.0, labels)
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_all_ignored_cross_entropy_is_zero():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = losses.create("ce", 3)(logits, torch.full((2, 4, 4), 255))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(LOSSES)), st.integers(1, 2), st.integers(1, 6), st.integers(7, 20), st.integers(7, 20),
       st.floats(0.1, 60.0), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_random_batches_never_give_non_finite_values(name, n, c, h, w, scale, ignore_share, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, h, w, generator=generator) * scale).requires_grad_(True)
    labels = torch.randint(0, c, (n, h, w), generator=generator)
    labels[torch.rand(n, h, w, generator=generator) < ignore_share] = 255
    loss = make(name, c)(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_rmi_on_maps_smaller_than_its_neighbourhood_is_a_clear_error():
    with pytest.raises(ValueError, match=r"maps of \[1, 1\] are smaller than the radius 3"):
        losses.create("rmi", 2)(torch.randn(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long))


def test_create_checks_weights_and_options():
    with pytest.raises(OptionError, match=r"class_weights: expected 3 class weights \(one per class\), got 1"):
        losses.create("wce", 3, class_weights=[1.0])
    with pytest.raises(OptionError, match="loss ce takes no class_weights"):
        losses.create("ce", 3, class_weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="unknown loss 'dice'"):
        losses.create("dice", 3)
    with pytest.raises(OptionError, match="loss ce takes no option radius"):
        losses.create("ce", 3, radius=3)
    with pytest.raises(OptionError, match="rmi_radius: renamed to radius"):
        losses.create("rmi", 3, rmi_radius=3)
    with pytest.raises(OptionError, match="pool_stride: max pooling needs the stride equal to pool_size"):
        losses.create("rmi", 3, pool_size=3, pool_stride=2)
    assert losses.create("rmi", 3, pool="interpolate", pool_size=3, pool_stride=2).pool_stride == 2


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_declared_option_is_accepted(name):
    values = {"radius": 2, "pool": "avg", "pool_size": 4, "pool_stride": 4, "weight_lambda": 0.3,
              "lambda_mode": "additive", "percent": 5.0, "smooth": 1.0, "background": True,
              "ignored_as_class_zero": True}
    options = {key: values[key] for key in option_names(LOSSES[name])}
    loss = make(name, 3) if not options else (
        losses.create(name, 3, class_weights=[1.0] * 3 if name in WEIGHTED else None, **options))
    logits = torch.randn(1, 3, 12, 12, requires_grad=True)
    assert torch.isfinite(loss(logits, torch.randint(0, 3, (1, 12, 12))))


def test_rmi_options_change_the_value():
    logits, labels = torch.randn(1, 3, 24, 24), torch.randint(0, 3, (1, 24, 24))
    base = float(losses.create("rmi", 3)(logits, labels))
    for options in ({"radius": 2}, {"pool": "avg", "pool_size": 4, "pool_stride": 4},
                    {"weight_lambda": 0.2}, {"lambda_mode": "additive"}):
        assert float(losses.create("rmi", 3, **options)(logits, labels)) != pytest.approx(base)
