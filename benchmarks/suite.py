"""`segrun bench suite`: every measurement segrun wants from a GPU, as one prepared command for the
few minutes a lent machine gives. In order: build the C++/CUDA library, run the CUDA kernel tests,
`bench ops`, `bench train` (the four study models x the `study` and `default` recipes x wCE and RMI,
plus the same rows with the kernels off, i.e. the PyTorch fallbacks) and `bench data` (skipped with
a message where albumentations is missing). Each section's results are written as soon as it ends,
with a log of everything printed and the seconds each section took, into one folder per device and
date. `--size tiny` runs the same sections at toy sizes (the tests run it on the CPU)."""
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import ops, timing, train, write_results
from segrun.atomic_write import write_atomically
from segrun.ops import OPS, extension

REPO = Path(__file__).resolve().parents[1]
STUDY_SPECS = [REPO / "specs" / "study" / f"cityscapes_{model}.toml" for model in ("hrnet", "ocr", "ocr_aspp", "ms_ocr")]

# What each size measures. study: the study's batch and crops, few steps so that the whole suite
# fits in 9 minutes on an H100-class GPU; tiny: toy sizes that run on a CPU in seconds.
SIZES = {
    "study": {"specs": STUDY_SPECS, "ops_size": "study", "ops_repeats": 20, "ops_compile": tuple(OPS),
              # (losses, recipes) crossed per group; the last group is the RMI fallback (kernels off)
              "train_groups": ((("wce", "rmi"), ("study", "default")), (("rmi",), ("auto/auto/off",))),
              "steps": 4, "warmup": 2, "batch": 6,
              "crop": (512, 1024), "inference_size": (1024, 2048),
              "data": {"workers": (0, 2, 4), "images": 8, "samples": 48, "size": (1024, 2048)}},
    "tiny": {"specs": [REPO / "specs" / "quickstart.toml"], "ops_size": "tiny", "ops_repeats": 2, "ops_compile": (),
             "train_groups": ((("wce",), ("32/contiguous/off", "default")),), "steps": 1, "warmup": 1, "batch": 2,
             "crop": (64, 64),
             "inference_size": (64, 64), "data": {"workers": (0,), "images": 2, "samples": 4, "size": (64, 128)}},
}


class Log:
    """Prints each line and keeps it for the suite's log file."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)


def _cuda_tests(log: Log) -> str:
    """The `cuda`-marked kernel tests, in a subprocess (pytest in this process would share its state)."""
    tests = REPO / "tests" / "test_kernels.py"
    if not tests.is_file():
        return f"skipped: {tests} is not here (run the suite from a checkout)"
    completed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", str(tests)], cwd=REPO,
                               capture_output=True, text=True, check=False)
    for line in (completed.stdout + completed.stderr).splitlines():
        log(f"    {line}")
    summary = completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else "no output"
    return f"exit {completed.returncode}: {summary}"


def run(device: str, size: str, out_dir: Path) -> dict:
    """Runs every section on `device`; returns the section summary also written to
    <out_dir>/<device>-<date>-suite.json. Result files already there are never replaced."""
    plan = SIZES[size]
    torch_device = torch.device(device)
    stem = f"{timing.result_stem(torch_device)}-suite{'' if size == 'study' else '-' + size}"
    folder = Path(out_dir) / stem
    if folder.exists():
        raise FileExistsError(f"{folder}: already holds a suite's results; move it away or give another --out")
    folder.mkdir(parents=True)
    log = Log()
    summary = {**timing.header(torch_device), "size": size, "sections": []}

    def section(name: str, measure) -> None:
        log(f"== {name}")
        started = time.monotonic()
        try:
            outcome = measure()
        except Exception as error:  # a failed section must not cost the others their minutes
            outcome = f"failed: {error.__class__.__name__}: {error}"
        seconds = round(time.monotonic() - started, 1)
        log(f"== {name}: {outcome} ({seconds} s)")
        summary["sections"].append({"section": name, "outcome": outcome, "seconds": seconds})
        write_atomically(folder / "suite.json", (json.dumps(summary, indent=1) + "\n").encode())
        write_atomically(folder / "suite.log", ("\n".join(log.lines) + "\n").encode())

    def build() -> str:
        if device != "cuda":
            return "skipped: the CPU runs the library only where bench ops asks for it"
        os.environ["SEGRUN_OPS"] = "ext"
        try:
            found = extension.library()
        finally:
            os.environ.pop("SEGRUN_OPS", None)
        return f"loaded ({found.how}), CUDA kernels: {found.cuda}" if found.loaded else f"not loaded: {found.reason}"

    def cuda_tests() -> str:
        return _cuda_tests(log) if device == "cuda" else "skipped: no CUDA device"

    def bench_ops() -> str:
        result = ops.run(device, plan["ops_size"], repeats=plan["ops_repeats"], compile_peers=plan["ops_compile"],
                         progress=log,
                         after_case=lambda result: write_results(result, ops.markdown, folder / "ops.json",
                                                                 folder / "ops.md"))
        return f"{len(result['ops'])} rows"

    def bench_train() -> str:
        rows: list[dict] = []

        def write(result: dict) -> None:
            write_results({**result, "train": rows + result["train"]}, train.markdown, folder / "train.json",
                          folder / "train.md")

        for losses, recipes in plan["train_groups"]:
            result = train.run(plan["specs"], device, plan["steps"], plan["warmup"], losses, recipes, plan["batch"],
                               plan["crop"], plan["inference_size"], progress=log, after_case=write)
            rows += result["train"]
        result = {**result, "train": rows}
        with contextlib.redirect_stdout(io.StringIO()):
            train.plot(result, folder / "time-complexity.png")
        return f"{len(rows)} rows"

    def bench_data() -> str:
        if importlib.util.find_spec("albumentations") is None:
            return "skipped: albumentations is not installed here (bench data times its pipelines)"
        from benchmarks import data  # imports albumentations

        options = plan["data"]
        result = data.run(plan["specs"][0], options["workers"], options["images"], options["samples"],
                          options["size"], progress=log)
        write_results(result, data.markdown, folder / "data.json", folder / "data.md")
        return f"{len(result['data'])} rows"

    log(f"segrun bench suite on {summary['device']}, torch {summary['torch']}, CUDA {summary['cuda']}, "
        f"segrun {summary['segrun_commit']}: results in {folder}")
    for name, measure in (("build", build), ("cuda tests", cuda_tests), ("bench ops", bench_ops),
                          ("bench train", bench_train), ("bench data", bench_data)):
        section(name, measure)
    total = sum(row["seconds"] for row in summary["sections"])
    log(f"suite: {total:.0f} s in all; {folder}")
    summary["seconds"] = round(total, 1)
    write_atomically(folder / "suite.json", (json.dumps(summary, indent=1) + "\n").encode())
    write_atomically(folder / "suite.log", ("\n".join(log.lines) + "\n").encode())
    return summary
