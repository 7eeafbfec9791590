"""The compiled ops (csrc/) held to their PyTorch specifications: the CPU C++ implementations on
every machine, the CUDA kernels where a GPU is present (marked `cuda`)."""
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ops_mode
from segrun import losses, ops
from segrun.ops import extension

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(scope="module", autouse=True)
def built_library():
    with ops_mode("ext"):
        found = extension.library()
    if not found.loaded:
        # A kernel that does not compile fails the suite on every machine that has a C++ compiler.
        if not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
            pytest.skip(f"no C++ compiler on this machine: {found.reason}")
        pytest.fail(f"segrun's operator library did not build: {found.reason}")
    return found


def both(op, *args, **kwargs):
    """(compiled result, PyTorch result) of a public op."""
    with ops_mode("ext"):
        compiled = op(*args, **kwargs)
    with ops_mode("torch"):
        reference = op(*args, **kwargs)
    return compiled, reference


def test_the_cuda_kernels_are_compiled_wherever_nvcc_and_a_cuda_torch_are(built_library):
    """(The suite sets SEGRUN_BUILD_CUDA=1, see conftest.py; segrun alone builds them only where a GPU is.)"""
    if extension.cuda_home() is None or not torch.version.cuda:
        pytest.skip("no CUDA toolkit or a CPU build of torch: the library is CPU only")
    assert built_library.cuda, built_library


def test_the_build_is_named_by_its_sources_and_compiles_cuda_only_where_asked(tmp_path, monkeypatch):

    sources = tmp_path / "csrc"
    shutil.copytree(extension.CSRC, sources)
    monkeypatch.setattr(extension, "CSRC", sources)
    flags = extension.build_flags(False)
    name = extension.cache_name(False, flags)
    assert name.startswith("segrun_ops_") and name == extension.cache_name(False, flags)
    assert extension.cache_name(True, flags) != name
    header = next(sources.rglob("*.h"))
    header.write_text(header.read_text() + "\n// another checkout's change\n")
    assert extension.cache_name(False, flags) != name  # two checkouts never share (and rebuild) one build

    assert extension._cuda_build(None) == (False, "no CUDA toolkit or a CPU build of torch")
    monkeypatch.delenv("SEGRUN_BUILD_CUDA", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert extension._cuda_build(tmp_path) == (False, "no GPU here; SEGRUN_BUILD_CUDA=1 would build the CUDA "
                                                      "kernels too")
    monkeypatch.setenv("SEGRUN_BUILD_CUDA", "1")
    assert extension._cuda_build(tmp_path)[0] is True


def test_auto_runs_what_measured_faster_per_device(monkeypatch):
    monkeypatch.setenv("SEGRUN_OPS", "auto")
    assert {op for op, _ in extension.AUTO} == set(ops.OPS) and {device for _, device in extension.AUTO} == {"cpu", "cuda"}
    for op in ops.OPS:
        assert extension.use_extension(torch.device("cpu"), op) == extension.AUTO[op, "cpu"][0]
    assert not extension.use_extension(torch.device("cuda"), "attention_fuse")  # measured slower
    monkeypatch.setenv("SEGRUN_OPS", "ext")
    assert extension.use_extension(torch.device("cpu"), "confusion_matrix")
    monkeypatch.setenv("SEGRUN_OPS", "nonsense")
    with pytest.raises(extension.ExtensionError, match="SEGRUN_OPS='nonsense'"):
        extension.mode()


def test_doctor_names_the_implementation_per_op_and_device(monkeypatch):
    monkeypatch.setenv("SEGRUN_OPS", "ext")
    rows = ops.backends()
    assert {(op, device) for op, device, _, _ in rows} >= {(op, "cpu") for op in ops.OPS}
    assert all(impl == "C++" for _, device, impl, _ in rows if device == "cpu")
    assert all(why.endswith(f"(radius {ops.RMI_RADIUS}; other radii run PyTorch)")
               for op, _, _, why in rows if op == "rmi_lower_bound")
    monkeypatch.setenv("SEGRUN_OPS", "torch")
    assert all(impl == "torch" and why == "SEGRUN_OPS=torch" for _, _, impl, why in ops.backends())


# --- confusion_matrix ----------------------------------------------------------------------

@st.composite
def confusion_batches(draw):
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    num_classes = draw(st.sampled_from([1, 2, 19, 60, 150, 256]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    target = torch.randint(0, num_classes, (n, h, w), generator=generator)
    ignore_share = draw(st.sampled_from([0.0, 0.3, 1.0]))
    target[torch.rand(n, h, w, generator=generator) < ignore_share] = 255
    # Small integers make ties common, so first-index tie breaking is exercised.
    logits = torch.randint(-2, 3, (n, num_classes, h, w), generator=generator).to(
        draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16])))
    if logits.dtype == torch.float64:  # differences below float32's resolution decide the argmax
        logits = logits + torch.rand(logits.shape, generator=generator, dtype=torch.float64) * 1e-12
    if draw(st.booleans()):
        logits = logits.to(memory_format=torch.channels_last)
    return logits, target, num_classes


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40, deadline=None)
@given(batch=confusion_batches())
def test_confusion_matrix_kernel_equals_the_specification(device, batch):
    logits, target, num_classes = (x.to(device) if torch.is_tensor(x) else x for x in batch)
    compiled, reference = both(ops.confusion_matrix, logits, target, num_classes)
    assert compiled.dtype == torch.int64 and compiled.device == logits.device
    assert torch.equal(compiled, reference)
    compiled, reference = both(ops.confusion_matrix, logits.argmax(1), target, num_classes)
    assert torch.equal(compiled, reference)


@pytest.mark.parametrize("device", DEVICES)
def test_confusion_matrix_kernel_follows_argmax_on_nan_and_skips_out_of_range(device):
    logits = torch.tensor([[1.0, float("nan"), float("nan")], [2.0, 1.0, 2.0]]).T.reshape(1, 2, 1, 3)
    logits = logits.permute(0, 1, 2, 3).contiguous().to(device)
    target = torch.tensor([[[0, 1, 7]]], device=device)
    compiled, reference = both(ops.confusion_matrix, logits, target, 2, 255)
    assert torch.equal(compiled, reference)
    prediction = torch.tensor([[[0, -1, 2]]], device=device)
    assert torch.equal(*both(ops.confusion_matrix, prediction, torch.tensor([[[0, 1, 1]]], device=device), 2))


# --- rmi_lower_bound -----------------------------------------------------------------------

@st.composite
def rmi_maps(draw):
    n, c = draw(st.integers(1, 3)), draw(st.sampled_from([1, 2, 19]))
    h, w = draw(st.integers(3, 12)), draw(st.integers(3, 12))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    labels = (torch.rand(n, c, h, w, generator=generator) > draw(st.sampled_from([0.0, 0.5, 1.0]))).double()
    if draw(st.booleans()):  # average pooling leaves fractions
        labels = labels * torch.rand(n, c, h, w, generator=generator, dtype=torch.float64)
    probs = torch.softmax(torch.randn(n, c, h, w, generator=generator, dtype=torch.float64) * 3, dim=1)
    if draw(st.booleans()):  # near-perfect predictions: the conditional covariance nearly vanishes
        probs = 0.98 * labels + 0.01
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    layout = draw(st.sampled_from([torch.contiguous_format, torch.channels_last]))
    return labels.to(dtype).contiguous(memory_format=layout), probs.to(dtype).contiguous(memory_format=layout)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40, deadline=None)
@given(maps=rmi_maps())
def test_rmi_kernel_equals_the_specification_value_and_gradient(device, maps):
    labels, probs = (x.to(device) for x in maps)
    tolerance = {"rtol": 1e-7, "atol": 1e-7} if probs.dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    grads = []
    for mode in ("ext", "torch"):
        leaf = probs.clone().requires_grad_(True)
        with ops_mode(mode):
            value = ops.rmi_lower_bound(labels, leaf)
        weights = torch.arange(1, value.numel() + 1, dtype=value.dtype, device=device)
        (gradient,) = torch.autograd.grad((value * weights).sum(), leaf)
        grads.append((value.detach(), gradient))
    (value, gradient), (expected_value, expected_gradient) = grads
    assert value.dtype == expected_value.dtype
    torch.testing.assert_close(value, expected_value, **tolerance)
    # Relative to the largest entry, or absolute below 1: where the gradient is zero in exact
    # arithmetic (a constant map), the specification's own rounding noise reaches 1e-8.
    scale = max(float(expected_gradient.abs().max()), 1.0)
    torch.testing.assert_close(gradient / scale, expected_gradient / scale, **tolerance)


@pytest.mark.parametrize("device", DEVICES)
def test_rmi_kernel_gradcheck_in_float64(device):
    generator = torch.Generator().manual_seed(1)
    labels = (torch.rand(2, 2, 5, 6, generator=generator) > 0.5).double().to(device)
    probs = (torch.rand(2, 2, 5, 6, generator=generator, dtype=torch.float64) * 0.9 + 0.05).to(device)
    with ops_mode("ext"):
        assert torch.autograd.gradcheck(lambda p: ops.rmi_lower_bound(labels, p), (probs.requires_grad_(True),))


def _reference_case(reference, case):
    data = np.load(reference / "losses" / f"{case}.npz")
    return {key: data[key] for key in data.files}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["rmi", "wrmi"])
@pytest.mark.parametrize("case", "abcd")
def test_rmi_loss_through_the_kernel_matches_the_reference(reference, device, name, case):
    data = _reference_case(reference, case)
    logits = torch.tensor(data["logits"], device=device, requires_grad=True)
    options = {"class_weights": data["class_weights"].tolist()} if name == "wrmi" else {}
    loss_fn = losses.create(name, logits.shape[1], **options).to(device)
    with ops_mode("ext"):
        loss = loss_fn(logits, torch.tensor(data["labels"], device=device))
    loss.backward()
    expected_grad = data[f"{name}_grad"]
    assert float(loss.detach()) == pytest.approx(float(data[f"{name}_loss"]), rel=1e-5)
    torch.testing.assert_close(logits.grad.cpu(), torch.tensor(expected_grad), rtol=0,
                               atol=1e-4 * np.abs(expected_grad).max())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rmi_kernel_under_autocast_takes_float32_maps(device, dtype):
    if device == "cpu" and dtype == torch.float16:
        pytest.skip("fp16 autocast is not offered on the CPU")
    generator = torch.Generator().manual_seed(2)
    labels = (torch.rand(2, 3, 7, 7, generator=generator) > 0.5).float().to(device)
    probs = torch.rand(2, 3, 7, 7, generator=generator).to(device)
    with ops_mode("ext"), torch.autocast(device, dtype=dtype):
        value = torch.ops.segrun.rmi_lower_bound_forward(labels.to(dtype), probs.to(dtype), 5e-4)[0]
    expected = torch.ops.segrun.rmi_lower_bound_forward(labels.to(dtype).float(), probs.to(dtype).float(), 5e-4)[0]
    assert value.dtype == torch.float64 and torch.isfinite(value).all()
    torch.testing.assert_close(value, expected)


# --- attention_fuse ------------------------------------------------------------------------

@st.composite
def fuse_inputs(draw):
    n, c = draw(st.integers(1, 2)), draw(st.sampled_from([1, 3, 19]))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    factor_h, factor_w = draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])), draw(st.sampled_from([1.0, 1.5, 2.0]))
    height, width = max(1, round(h * factor_h)), max(1, round(w * factor_w))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    attn_channels = draw(st.sampled_from([1, c]))
    tensors = [torch.randn(n, c, height, width, generator=generator, dtype=torch.float64),
               torch.randn(n, c, h, w, generator=generator, dtype=torch.float64),
               torch.rand(n, attn_channels, h, w, generator=generator, dtype=torch.float64)]
    dtype = draw(st.sampled_from([torch.float64, torch.float32, torch.float16, torch.bfloat16]))
    tensors = [t.to(dtype) for t in tensors]
    if draw(st.booleans()):
        tensors = [t.to(memory_format=torch.channels_last) for t in tensors]
    return tensors, draw(st.booleans())


FUSE_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=50, deadline=None)
@given(inputs=fuse_inputs())
def test_attention_fuse_kernel_equals_the_specification_forward_and_backward(device, inputs):
    tensors, align_corners = inputs
    tensors = [t.to(device) for t in tensors]
    grad = torch.randn(tensors[0].shape, dtype=torch.float64).to(device=device, dtype=tensors[0].dtype)
    results = []
    for mode in ("ext", "torch"):
        leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
        with ops_mode(mode):
            out = ops.attention_fuse(*leaves, align_corners)
        results.append((out.detach(), *torch.autograd.grad(out, leaves, grad)))
    tolerance = FUSE_TOLERANCE[tensors[0].dtype]
    assert results[0][0].shape == results[1][0].shape and results[0][0].dtype == results[1][0].dtype
    for compiled, reference in zip(*results):
        # Half-precision rounding differs (the kernel interpolates in float32), so compare in float.
        torch.testing.assert_close(compiled.double(), reference.double(), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("align_corners", [True, False])
def test_attention_fuse_kernel_gradcheck_in_float64(device, align_corners):
    generator = torch.Generator().manual_seed(3)
    inputs = (torch.randn(2, 3, 7, 9, generator=generator, dtype=torch.float64),
              torch.randn(2, 3, 3, 5, generator=generator, dtype=torch.float64),
              torch.rand(2, 1, 3, 5, generator=generator, dtype=torch.float64))
    inputs = tuple(t.to(device).requires_grad_(True) for t in inputs)
    with ops_mode("ext"):
        assert torch.autograd.gradcheck(lambda *t: ops.attention_fuse(*t, align_corners), inputs)


# --- registration: opcheck and torch.compile -----------------------------------------------

def _opcheck_samples(device):
    generator = torch.Generator().manual_seed(4)
    def rand(*shape, dtype=torch.float32):
        return torch.rand(*shape, generator=generator, dtype=dtype).to(device)
    labels = (rand(2, 3, 6, 7) > 0.5).float()
    return [
        ("confusion_matrix", (rand(2, 4, 5, 6), torch.randint(0, 4, (2, 5, 6), generator=generator).to(device), 4, 255)),
        ("confusion_matrix", (torch.randint(0, 4, (2, 5, 6), generator=generator).to(device),
                              torch.randint(0, 4, (2, 5, 6), generator=generator).to(device), 4, 255)),
        ("rmi_lower_bound_forward", (labels, rand(2, 3, 6, 7).requires_grad_(True), 5e-4)),
        ("attention_fuse", (rand(2, 3, 8, 10).requires_grad_(True), rand(2, 3, 4, 5).requires_grad_(True),
                            rand(2, 1, 4, 5).requires_grad_(True), True)),
        ("attention_fuse", (rand(1, 2, 5, 5).requires_grad_(True), rand(1, 2, 3, 3).requires_grad_(True),
                            rand(1, 2, 3, 3).requires_grad_(True), False)),
    ]


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for name, args in _opcheck_samples(device):
        torch.library.opcheck(getattr(torch.ops.segrun, name), args)


def test_ops_run_inside_torch_compile():
    generator = torch.Generator().manual_seed(5)
    hi = torch.randn(1, 2, 6, 8, generator=generator, requires_grad=True)
    lo = torch.randn(1, 2, 3, 4, generator=generator)
    attn = torch.rand(1, 1, 3, 4, generator=generator)

    def fused_loss(hi):
        return torch.ops.segrun.attention_fuse(hi, lo, attn, True).square().sum()

    compiled = torch.compile(fused_loss, backend="aot_eager", fullgraph=True)
    (grad,) = torch.autograd.grad(compiled(hi), hi)
    (expected,) = torch.autograd.grad(fused_loss(hi), hi)
    torch.testing.assert_close(grad, expected)
