"""Timing and memory measurement shared by the benchmarks."""
import datetime
import os
import platform
import statistics
import time

import torch

from segrun import lineage


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_peak_extra_mb(fn) -> float:
    """Peak memory fn() allocates on the CPU beyond what was allocated before it ran, from the
    profiler's record of every allocation and free (one extra, untimed call; torch keeps no public
    statistics of its CPU allocator, so this reads the profiler's event tree)."""
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # the profiler's start/stop lines, read when it first starts
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiled:
        fn()

    def events(nodes):
        for node in nodes:
            yield node
            yield from events(node.children)

    changes = sorted((event.start_time_ns, event.typed[1].alloc_size)
                     for event in events(profiled.profiler.kineto_results.experimental_event_tree())
                     if event.typed[0] == _EventType.Allocation and event.typed[1].device.type == "cpu")
    allocated = peak = 0
    for _, size in changes:
        allocated += size
        peak = max(peak, allocated)
    return peak / 2**20


def measure(fn, device: torch.device, repeats: int = 20, warmup: int = 3) -> dict:
    """measure_in_turn of one function."""
    return measure_in_turn({"fn": fn}, device, repeats, warmup)["fn"]


def measure_in_turn(fns: dict, device: torch.device, repeats: int = 20, warmup: int = 3) -> dict:
    """Per name, the median and minimum time of fns[name]() over `repeats` timed calls after
    `warmup` calls (CUDA events on a GPU, perf_counter on the CPU), and the peak memory it
    allocated beyond what was allocated before it ran (on the CPU from one more, profiled call).
    The timed calls take turns, one of each function per round, so that a shared machine's changing
    load falls on all of them alike. A function that fails in warm-up (a RuntimeError, running out
    of memory included) gets {"error": its first line} and is left out of the rounds."""
    results, timed = {}, {}
    for name, fn in fns.items():
        try:
            for _ in range(warmup):
                fn()
            synchronize(device)
            timed[name] = fn
        except RuntimeError as error:
            results[name] = {"error": str(error).splitlines()[0][:200]}
        if device.type == "cuda":
            torch.cuda.empty_cache()
    times = {name: [] for name in timed}
    peaks_mb = dict.fromkeys(timed, 0.0)
    for _ in range(repeats):
        for name, fn in timed.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times[name].append(start.elapsed_time(end))
                peaks_mb[name] = max(peaks_mb[name], (torch.cuda.max_memory_allocated(device) - before) / 2**20)
            else:
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1e3)
    for name, fn in timed.items():
        peak_extra_mb = peaks_mb[name] if device.type == "cuda" else cpu_peak_extra_mb(fn) if device.type == "cpu" else None
        results[name] = {"median_ms": statistics.median(times[name]), "min_ms": min(times[name]), "repeats": repeats,
                         "peak_extra_mb": peak_extra_mb}
    return {name: results[name] for name in fns}


def copy_bandwidth(device: torch.device, megabytes: int = 1024) -> float:
    """Bytes per second a device-to-device copy moves, counting bytes read and written."""
    source = torch.empty(megabytes * 2**20 // 4, dtype=torch.float32, device=device).fill_(1.0)
    target = torch.empty_like(source)
    timing = measure(lambda: target.copy_(source), device, repeats=10, warmup=2)
    return 2 * source.numel() * 4 / (timing["median_ms"] / 1e3)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def header(device: torch.device) -> dict:
    """What every result file names: device, versions, commit, date."""
    return {"device": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "segrun_commit": lineage.segrun_commit() or "unknown", "date": datetime.date.today().isoformat()}


def result_stem(device: torch.device) -> str:
    """`<device>-<date>`, as result files are named."""
    name = "".join(ch if ch.isalnum() else "-" for ch in device_name(device).lower()).strip("-")
    while "--" in name:
        name = name.replace("--", "-")
    return f"{name}-{datetime.date.today().isoformat()}"
