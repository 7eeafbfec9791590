import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segrun import build, ops
from segrun.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def test_show_prints_a_spec_that_loads_back_equal(tmp_path, capsys):
    assert main(["show", str(REPO / "specs" / "quickstart.toml"), "trainer.epochs=3"]) == 0
    printed = capsys.readouterr().out
    expected = build.load_spec(REPO / "specs" / "quickstart.toml", ["trainer.epochs=3"])
    assert build.read_spec(printed) == expected
    (tmp_path / "shown.toml").write_text(printed)
    assert build.load_spec(tmp_path / "shown.toml") == expected


def test_user_errors_exit_2_with_one_line_and_no_traceback(write_spec, minimal_spec):
    path = write_spec(minimal_spec + "[trainer]\nepoch = 3\n")
    result = subprocess.run([sys.executable, "-m", "segrun", str(path)], check=False, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("segrun: error: ") and "did you mean trainer.epochs?" in result.stderr


@pytest.mark.parametrize("arguments, message", [
    (["missing.toml"], "missing.toml: no such spec file"),
    (["show", "{spec}", "trainer.epochs"], "expected KEY=VALUE"),
    (["validate", "{spec}"], "no such folder; unpack leftImg8bit_trainvaltest.zip (cityscapes-dataset.com) into"),
    (["data", "prepare", "cityscapes", "{tmp}/nothing"], "gtFine: no such folder"),
])
def test_each_command_reports_user_errors(write_spec, tmp_path, capsys, arguments, message, minimal_spec):
    path = write_spec(minimal_spec.replace('"somewhere"', f'"{tmp_path}/absent"'))
    arguments = [a.format(spec=path, tmp=tmp_path) for a in arguments]
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def command_lines(commands=COMMANDS, prefix=()):
    """Every command and subcommand as its words on the command line, from the dispatch table."""
    for name, command in commands.items():
        yield [*prefix, name]
        yield from command_lines(command.subcommands, [*prefix, name])


@pytest.mark.parametrize("command", [[], *command_lines()], ids=lambda words: " ".join(words) or "segrun")
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*command, "--help"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.startswith(" ".join(["usage: segrun", *command]) + " ")


@pytest.mark.parametrize("command", [[], ["train"], ["data"], ["bench"]])
def test_help_imports_no_torch(command):
    """A command takes its choices from the registries only when it is named, so help stays fast."""
    script = (f"import sys\nfrom segrun.cli import main\ntry:\n    main({[*command, '--help']!r})\n"
              "except SystemExit:\n    print('torch' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=REPO)
    assert result.stderr == "False\n"


def test_data_synth_prepare_then_validate(tmp_path, write_spec, capsys, minimal_spec):
    root = tmp_path / "city"
    assert main(["data", "synth", "cityscapes", str(root), "--train-images", "3", "--val-images", "2",
                 "--height", "64", "--width", "128"]) == 0
    assert main(["data", "prepare", "cityscapes", str(root)]) == 0
    path = write_spec(minimal_spec.replace('"somewhere"', f'"{root}"'))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "wrote 5 synthetic scenes" in out and "wrote 5 files" in out
    assert "cityscapes with 3 train and 2 val images; labels prepared" in out


def test_validate_reports_the_checks_before_a_missing_file(write_spec, capsys, minimal_spec):
    path = write_spec('init = "/nonexistent/init.ckpt"\n' + minimal_spec)
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == f"{path}: spec ok (hrnet/hrnet_w48, losses ce)\n"
    assert captured.err == f"segrun: error: {path}: init: /nonexistent/init.ckpt: no such file\n"


def test_relative_roots_live_under_segrun_data(tmp_path, write_spec, monkeypatch, capsys, minimal_spec):
    monkeypatch.setenv("SEGRUN_DATA", str(tmp_path / "datasets"))
    path = write_spec(minimal_spec + "[data.synthetic]\n")
    assert main(["validate", str(path)]) == 0
    assert f"{tmp_path}/datasets/somewhere: not there yet; the run will synthesise it" in capsys.readouterr().out


def _doctor_op_rows(out: str) -> list[tuple[str, ...]]:
    """(op, device, "implementation: why") for each line under doctor's "ops" header."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ops (SEGRUN_OPS="))
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        rows.append(tuple(line.split(maxsplit=2)))
    return sorted(rows)


def test_doctor_names_the_implementation_of_each_op_and_why(monkeypatch, capsys):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    monkeypatch.setenv("SEGRUN_OPS", "torch")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"torch       {torch.__version__}" in out and "cuda        " in out and "ops (SEGRUN_OPS=torch):" in out
    assert _doctor_op_rows(out) == sorted((op, device, "torch: SEGRUN_OPS=torch") for op in ops.OPS for device in devices)
    monkeypatch.setenv("SEGRUN_OPS", "auto")
    assert main(["doctor"]) == 0
    rows = _doctor_op_rows(capsys.readouterr().out)
    assert [(op, device) for op, device, _ in rows] == sorted((op, device) for op in ops.OPS for device in devices)
    library = ops.extension.library()
    for op, device, line in rows:
        faster, measured = ops.extension.AUTO[op, device]
        if not faster:
            expected = f"torch: SEGRUN_OPS=auto: {measured}"
        elif not library.loaded:
            expected = f"torch: {library.reason}"
        elif device == "cuda" and not library.cuda:
            expected = f"torch: the library has no CUDA kernels ({library.how})"
        else:
            radius = f" (radius {ops.RMI_RADIUS}; other radii run PyTorch)" if op == "rmi_lower_bound" else ""
            expected = f"{'C++' if device == 'cpu' else 'CUDA'}: {library.how}; SEGRUN_OPS=auto: {measured}{radius}"
        assert line == expected, (op, device)


def test_summary_prints_parameters_macs_and_outputs(capsys):
    quickstart = str(REPO / "specs" / "quickstart.toml")
    losses = 'loss=[{name="ce"}, {name="ce", weight=0.4}]'
    assert main(["summary", quickstart, "model.name=hrnet_ocr", "model.backbone=hrnet_w48", losses, "--size", "64x128"]) == 0
    out = capsys.readouterr().out
    assert "parameters  70,372,678" in out and "at 64x128" in out and "0: main, 1: aux" in out


def test_eval_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "no checkpoints/*.ckpt in this run folder" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "x.ckpt")]) == 2
    assert "no such run folder or checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["eval", str(tmp_path), "--sliding", "big"])
    assert exit.value.code == 2 and "expected HEIGHTxWIDTH such as 1024x1024, got 'big'" in capsys.readouterr().err
