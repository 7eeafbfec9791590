"""`segrun bench ops`: each op's compiled kernel against its PyTorch fallback and the peer a user
would otherwise reach for (torchmetrics, the original RMI, eager interpolate-multiply-add, and
torch.compile of the fallback), at the study's sizes. Each row states its floor, the time to move
the bytes the op must read and write once at the measured copy bandwidth, and the ratio to it."""
import os

import torch
import torch.nn.functional as F

from benchmarks import peers, timing
from segrun.ops import (
    RMI_RADIUS,
    attention_fuse,
    attention_fuse_torch,
    confusion_matrix,
    confusion_matrix_torch,
    extension,
    rmi_lower_bound,
    rmi_lower_bound_torch,
)

# (label, shape) per op, the targets' cases first. "study" are the sizes of the study; "tiny" runs in seconds on a CPU.
SIZES = {
    "study": {
        "attention_fuse": [("6x19, 256x512 to 512x1024", (6, 19, 512, 1024))],
        "confusion_matrix": [("train batch 6x19x512x1024", (6, 19, 512, 1024)),
                             ("validation 1x19x1024x2048", (1, 19, 1024, 2048)),
                             ("train batch 12x19x512x1024", (12, 19, 512, 1024)),
                             ("PASCAL Context 8x60x520x520", (8, 60, 520, 520))],
        "rmi_lower_bound": [("6x19x512x1024, max pool 3/3", (6, 19, 512, 1024), "max"),
                            ("6x19x512x1024, avg pool 4/4", (6, 19, 512, 1024), "avg")],
    },
    "tiny": {
        "attention_fuse": [("tiny 2x19, 16x32 to 32x64", (2, 19, 32, 64))],
        "confusion_matrix": [("tiny 2x19x32x64", (2, 19, 32, 64))],
        "rmi_lower_bound": [("tiny 2x19x48x96, max pool 3/3", (2, 19, 48, 96), "max")],
    },
}
# torch.compile takes tens of seconds per shape, so it is measured on the first size of each op.
COMPILED_CASE_INDEX = 0


def _bytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _public_op_row() -> str:
    """The row of the public op (segrun.ops.<op>), which runs what SEGRUN_OPS chooses."""
    return f"SEGRUN_OPS={extension.mode()}"


def confusion_cases(device, shape, use_kernel, compile_peer):
    generator = torch.Generator(device=device).manual_seed(0)
    n, c, h, w = shape
    logits = torch.randn(shape, generator=generator, device=device)
    target = torch.randint(0, c, (n, h, w), generator=generator, device=device)
    target[:, :, : w // 16] = 255
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    impls = {"fallback": lambda: confusion_matrix_torch(logits, target, c),
             "torchmetrics": lambda: multiclass_confusion_matrix(logits, target, c, ignore_index=255,
                                                                 validate_args=False)}
    if use_kernel:
        impls["kernel"] = lambda: torch.ops.segrun.confusion_matrix(logits, target, c, 255)
        logits_cl = logits.contiguous(memory_format=torch.channels_last)  # read in place, no conversion
        impls["kernel, channels_last logits"] = lambda: torch.ops.segrun.confusion_matrix(logits_cl, target, c, 255)
        impls[_public_op_row()] = lambda: confusion_matrix(logits, target, c)
    if compile_peer:
        compiled = torch.compile(confusion_matrix_torch)
        impls["compiled fallback"] = lambda: compiled(logits, target, c)
    return impls, _bytes(logits, target)


def rmi_cases(device, shape, pooling, use_kernel, compile_peer):
    generator = torch.Generator(device=device).manual_seed(0)
    n, c, h, w = shape
    labels = F.one_hot(torch.randint(0, c, (n, h, w), generator=generator, device=device), c).permute(0, 3, 1, 2).float()
    probs = torch.softmax(torch.randn(shape, generator=generator, device=device), dim=1)
    if pooling == "max":  # the study: max pooling, kernel 3, stride 3, padding 1
        labels, probs = (F.max_pool2d(t, 3, 3, 1) for t in (labels, probs))
    else:  # NVIDIA's semantic-segmentation code: average pooling, kernel 4, stride 4
        labels, probs = (F.avg_pool2d(t, 4, 4) for t in (labels, probs))
    probs = probs.detach().requires_grad_(True)

    def forward_backward(fn):
        def run():
            (grad,) = torch.autograd.grad(fn(labels, probs).sum(), probs)
            return grad
        return run

    impls = {"fallback": forward_backward(rmi_lower_bound_torch), "original": forward_backward(peers.rmi_original)}
    if use_kernel:
        def kernel(labels, probs):
            return torch.ops.segrun.rmi_lower_bound_forward(labels, probs, peers.RMI_ALPHA)[0].mean(0) / RMI_RADIUS**2
        impls["kernel"] = forward_backward(kernel)

        def kernel_from_channels_last(labels, probs):  # the op converts such maps at its boundary
            return kernel(labels.contiguous(memory_format=torch.channels_last),
                          probs.contiguous(memory_format=torch.channels_last))
        impls["kernel, channels_last maps"] = forward_backward(kernel_from_channels_last)
        impls[_public_op_row()] = forward_backward(rmi_lower_bound)
    if compile_peer:
        impls["compiled fallback"] = forward_backward(torch.compile(rmi_lower_bound_torch))
    # Read both maps forward, both again and write the gradient backward.
    return impls, _bytes(labels, probs) * 2 + _bytes(probs)


def fuse_cases(device, shape, use_kernel, compile_peer):
    generator = torch.Generator(device=device).manual_seed(0)
    n, c, h, w = shape
    hi = torch.randn(shape, generator=generator, device=device, requires_grad=True)
    lo = torch.randn(n, c, h // 2, w // 2, generator=generator, device=device, requires_grad=True)
    attn = torch.rand(n, 1, h // 2, w // 2, generator=generator, device=device, requires_grad=True)
    grad = torch.randn(shape, generator=generator, device=device)

    def forward_backward(fn):
        return lambda: torch.autograd.grad(fn(hi, lo, attn, True), (hi, lo, attn), grad)

    impls = {"fallback": forward_backward(attention_fuse_torch), "eager": forward_backward(peers.attention_fuse_eager)}
    if use_kernel:
        impls["kernel"] = forward_backward(torch.ops.segrun.attention_fuse)
        impls[_public_op_row()] = forward_backward(attention_fuse)
    if compile_peer:
        impls["compiled eager"] = forward_backward(torch.compile(peers.attention_fuse_eager))
    # Forward reads hi, lo, attn and writes out; backward reads grad, hi, lo, attn and writes
    # the three gradients.
    return impls, 5 * _bytes(hi) + 3 * _bytes(lo) + 3 * _bytes(attn)


def run(device: str = "cuda", size: str = "study", repeats: int = 20, compile_peers=("attention_fuse", "confusion_matrix", "rmi_lower_bound"),
        progress=print, after_case=lambda result: None) -> dict:
    """Measures every case of `size`; `after_case(result)` is called with the results so far after
    each case, so a run cut short still leaves what it measured."""
    device = torch.device(device)
    os.environ.setdefault("SEGRUN_OPS", "auto")
    library = extension.library() if extension.mode() != "torch" else None
    use_kernel = bool(library and library.loaded and (device.type == "cpu" or library.cuda))
    bandwidth = timing.copy_bandwidth(device, megabytes=1024 if device.type == "cuda" else 256)
    result = {**timing.header(device), "size": size, "repeats": repeats, "copy_bandwidth_gb_s": bandwidth / 1e9,
              "library": (library.how if use_kernel else (library.reason if library else "SEGRUN_OPS=torch")),
              "ops": []}
    progress(f"{result['device']}: copy bandwidth {bandwidth / 1e9:.0f} GB/s; kernels: {result['library']}")
    builders = {"confusion_matrix": confusion_cases, "rmi_lower_bound": rmi_cases, "attention_fuse": fuse_cases}
    for op, cases in SIZES[size].items():
        for index, (label, shape, *extra) in enumerate(cases):
            compile_peer = op in compile_peers and index == COMPILED_CASE_INDEX
            impls, floor_bytes = builders[op](device, shape, *extra, use_kernel, compile_peer)
            floor_ms = floor_bytes / bandwidth * 1e3
            rows = timing.measure_in_turn(impls, device, repeats=repeats)
            fallback_ms = rows["fallback"].get("median_ms")
            for impl, row in rows.items():
                if "median_ms" in row:
                    row.update(floor_ms=floor_ms, ratio_to_floor=row["median_ms"] / floor_ms,
                               bandwidth_fraction=floor_ms / row["median_ms"],
                               speedup_vs_fallback=fallback_ms / row["median_ms"] if fallback_ms else None)
                result["ops"].append({"op": op, "case": label, "shape": list(shape), "impl": impl, **row})
                progress(f"  {op:<16} {label:<30} {impl:<18} " + (
                    f"{row['median_ms']:9.3f} ms  {row['ratio_to_floor']:6.2f}x floor" if "median_ms" in row
                    else f"failed: {row['error']}"))
            after_case(result)
    return result


def markdown(result: dict) -> str:
    lines = [f"# segrun bench ops: {result['device']}",
             "",
             (f"torch {result['torch']}, CUDA {result['cuda']}, segrun {result['segrun_commit']}, {result['date']}; "
              f"median of {result['repeats']} timed repetitions after warm-up. Floor: the bytes the op must read "
              f"and write once at the measured copy bandwidth ({result['copy_bandwidth_gb_s']:.0f} GB/s). "
              f"Kernels: {result['library']}."),
             "",
             "| op | case | implementation | median ms | floor ms | x floor | speedup vs fallback | peak extra MiB |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["ops"]:
        if "median_ms" not in row:
            lines.append(f"| {row['op']} | {row['case']} | {row['impl']} | failed: {row['error']} | | | | |")
            continue
        memory = "" if row["peak_extra_mb"] is None else f"{row['peak_extra_mb']:.1f}"
        speedup = "" if row["speedup_vs_fallback"] is None else f"{row['speedup_vs_fallback']:.2f}"
        lines.append(f"| {row['op']} | {row['case']} | {row['impl']} | {row['median_ms']:.3f} | {row['floor_ms']:.3f} "
                     f"| {row['ratio_to_floor']:.2f} | {speedup} | {memory} |")
    return "\n".join(lines) + "\n"
