"""Faults injected on purpose: broken checkpoints, broken data, bad arguments, Ctrl-C. Each case
ends in one line and a known exit status, and no file of the run is lost or replaced."""
import json
import os
import signal

import pytest
import torch

from conftest import logged_losses, trained_tiny_run
from segrun import build
from segrun.cli import main
from segrun.resolve import resolve
from segrun.run_folder import planned_run_folder


@pytest.fixture
def tiny(tiny_spec):
    """Two steps an epoch, three epochs."""
    return tiny_spec(batch_size=4, train_images=8, val_images=2, width=96, epochs=3)


def run_folder(spec_file, runs):
    return planned_run_folder(resolve(build.load_spec(spec_file)), runs, None)


def only_line(text: str) -> str:
    """The one line of `text`, progress bars aside."""
    lines = [line for line in text.replace("\r", "\n").strip().splitlines() if "%|" not in line and line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def snapshot(folder) -> dict:
    """Every file of the run folder and its bytes."""
    return {path.relative_to(folder.path): path.read_bytes() for path in folder.path.rglob("*") if path.is_file()}


def train(spec_file, runs, *overrides) -> int:
    return main([str(spec_file), *overrides, "--runs", str(runs), "--no-progress"])


def test_ctrl_c_writes_its_checkpoint_then_exits_130_with_one_line(tiny, tmp_path, signal_during, capsys):
    handler = signal.getsignal(signal.SIGINT)
    signal_during(signal.SIGINT, step=3)  # the step (the last of epoch 1) finishes; training stops in its validation
    assert train(tiny, tmp_path / "runs") == 130
    folder = run_folder(tiny, tmp_path / "runs")
    assert only_line(capsys.readouterr().err) == (
        f"segrun: interrupted: {folder.path}: stopped at step 4 (epoch 1) on SIGINT; checkpoints/interrupted.ckpt "
        "holds it; run the same command to resume")
    assert torch.load(folder.checkpoints / "interrupted.ckpt", weights_only=True)["global_step"] == 4
    assert signal.getsignal(signal.SIGINT) == handler  # Lightning's "ignore further Ctrl-C" does not outlive training


def test_a_truncated_checkpoint_is_moved_aside_and_the_run_resumes_from_the_newest_good_one(tiny, tmp_path,
                                                                                          monkeypatch, signal_during,
                                                                                          capsys):
    signal_during(signal.SIGINT, step=4)  # after two whole epochs: best-epoch=00N.ckpt, last.ckpt, interrupted.ckpt
    assert train(tiny, tmp_path / "runs") == 130
    monkeypatch.undo()
    folder = run_folder(tiny, tmp_path / "runs")
    best = folder.best_checkpoint()
    best_state = torch.load(best, weights_only=True)
    for name in ("last.ckpt", "interrupted.ckpt"):  # a full disk, a copy cut short
        path = folder.checkpoints / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    best.touch()  # newest after them would hide the fault; it must be the one left over
    for name in ("last.ckpt", "interrupted.ckpt"):
        (folder.checkpoints / name).touch()
    before = snapshot(folder)
    capsys.readouterr()

    assert train(tiny, tmp_path / "runs") == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("resuming"))
    assert line.startswith(f"resuming {folder.path} from {best.name} (epoch {best_state['epoch']}, step "
                           f"{best_state['global_step']}), the newest checkpoint that loads; ")
    assert "last.ckpt moved aside as last.ckpt.unreadable-" in line and "interrupted.ckpt moved aside as" in line
    moved = {path.name.partition(".unreadable-")[0]: path for path in folder.checkpoints.glob("*.unreadable-*")}
    assert moved.keys() == {"last.ckpt", "interrupted.ckpt"}
    for name, path in moved.items():  # kept byte for byte
        assert path.read_bytes() == before[folder.checkpoints.relative_to(folder.path) / name]
    assert logged_losses(folder, version=1)[0][0] == best_state["global_step"]  # not step 0
    assert folder.finished
    for path, data in before.items():  # everything else is still there as it was (checkpoints move on by design)
        if path.parent.name != "checkpoints":
            assert (folder.path / path).read_bytes() == data


class NotATensor:
    pass


def test_a_run_with_no_good_checkpoint_says_so_then_starts_again(tiny, tmp_path, monkeypatch, signal_during, capsys):
    signal_during(signal.SIGINT, step=2)
    assert train(tiny, tmp_path / "runs") == 130
    monkeypatch.undo()
    folder = run_folder(tiny, tmp_path / "runs")
    (folder.checkpoints / "last.ckpt").write_bytes(b"\x80\x02random bytes, not a checkpoint" * 10)
    torch.save({"state_dict": {}, "object": NotATensor()}, folder.checkpoints / "interrupted.ckpt")  # refused
    best = folder.best_checkpoint()
    torch.save({"state_dict": {"model.other.weight": torch.ones(1)}, "epoch": 0, "global_step": 2,
                "optimizer_states": [], "loops": {}}, best)  # another model's weights
    before = {path.name: path.read_bytes() for path in folder.checkpoints.iterdir()}
    capsys.readouterr()

    assert train(tiny, tmp_path / "runs") == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "no checkpoint loads" in line)
    assert line.startswith(f"{folder.path}: no checkpoint loads, so training starts again from epoch 0; ")
    assert "not a readable PyTorch checkpoint" in line and "holds pickled Python objects" in line
    assert "holds another model" in line
    moved = {path.name.partition(".unreadable-")[0]: path.read_bytes() for path in folder.checkpoints.glob("*.unreadable-*")}
    assert moved == before
    assert logged_losses(folder, version=1)[0][0] == 0


def test_no_checkpoint_is_written_from_weights_that_were_not_restored(tiny, tmp_path, monkeypatch, signal_during,
                                                                     capsys):
    """The safety net behind the check: a checkpoint that passes it but fails as Lightning restores
    it leaves no interrupted.ckpt of freshly built weights behind."""
    signal_during(signal.SIGINT, step=2)
    assert train(tiny, tmp_path / "runs") == 130
    monkeypatch.undo()
    folder = run_folder(tiny, tmp_path / "runs")
    (folder.checkpoints / "interrupted.ckpt").unlink()
    last = folder.checkpoints / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    before = snapshot(folder)
    monkeypatch.setattr("segrun.runner.check_training_checkpoint", lambda task, path: (1, 2))
    with pytest.raises(RuntimeError):
        train(tiny, tmp_path / "runs")
    assert not (folder.checkpoints / "interrupted.ckpt").exists()
    after = snapshot(folder)
    assert {path: after[path] for path in before} == before


@pytest.mark.parametrize("where", ["file", "override"])
def test_an_integer_beyond_64_bits_is_a_spec_error(tiny, where, capsys):
    big = "99999999999999999999999"
    if where == "file":
        tiny.write_text(tiny.read_text().replace("epochs = 3", f"epochs = {big}"))
        overrides, source = [], str(tiny)
    else:
        overrides, source = [f"trainer.epochs={big}"], f"override 'trainer.epochs={big}'"
    assert main(["validate", str(tiny), *overrides]) == 2
    assert only_line(capsys.readouterr().err) == (
        f"segrun: error: {source}: trainer.epochs: {big} is beyond TOML's 64-bit integers (-2^63 to 2^63-1)")


# ---- checkpoint, weights and run-folder arguments ----------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(spec file, run folder) of a finished one-epoch run, shared by the argument tests, which only read it."""
    spec_file, _ = trained_tiny_run(tmp_path_factory.mktemp("trained"), train_images=4, val_images=3, width=96)
    return spec_file, run_folder(spec_file, spec_file.parent / "runs")


class CallsTheShell:
    def __reduce__(self):
        return os.system, ("echo this never runs",)


def bad_checkpoints(folder) -> dict:
    """Inside the run folder: a random file, a checkpoint cut short, pickles weights_only refuses (an
    object, a call into the shell), another model's checkpoint, and a symbolic link to itself."""
    names = {"random": "random.ckpt", "truncated": "truncated.ckpt", "refused": "refused.ckpt", "code": "code.ckpt",
             "other model": "other.ckpt", "loop": "loop.ckpt"}
    files = {kind: folder.checkpoints / name for kind, name in names.items()}
    files["random"].write_bytes(bytes(range(256)) * 8)
    best = folder.best_checkpoint().read_bytes()
    files["truncated"].write_bytes(best[: len(best) // 2])
    torch.save({"state_dict": {"model.weight": torch.ones(1)}, "object": NotATensor()}, files["refused"])
    torch.save({"state_dict": {"model.weight": torch.ones(1)}, "hyper": CallsTheShell()}, files["code"])
    torch.save({"state_dict": {"model.conv.weight": torch.ones(3, 3)}}, files["other model"])
    files["loop"].symlink_to(files["loop"].name)
    return files


EXPECTED = {"random": "not a readable PyTorch checkpoint: truncated, damaged, or not written by torch.save",
            "truncated": "not a readable PyTorch checkpoint: truncated, damaged, or not written by torch.save",
            "refused": "holds pickled Python objects besides tensors (",
            "code": "holds pickled code (a call to ",
            "other model": "does not fit this run's model (missing: ",
            "loop": "a symbolic link that loops back on itself"}


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_a_bad_checkpoint_argument_is_one_line_and_exit_2(trained, command, tmp_path, capsys):
    _, folder = trained
    files = bad_checkpoints(folder)
    try:
        before = snapshot(folder)
        for kind, path in files.items():
            capsys.readouterr()
            extra = [str(folder.path / "spec.toml"), "--out", str(tmp_path / "out")] if command == "predict" else \
                ["--out", str(tmp_path / "eval.json")]
            # predict reads the spec file as an image, skipped; it never gets that far
            assert main([command, str(path), *extra]) == 2, kind
            line = only_line(capsys.readouterr().err)
            assert line.startswith(f"segrun: error: {path}: {EXPECTED[kind]}"), line
        assert snapshot(folder) == before and not (tmp_path / "eval.json").exists()
    finally:
        for path in files.values():
            path.unlink()


def test_a_checkpoint_holding_numpy_scalars_evaluates(trained, tmp_path):
    """(A training snapshot's score as numpy keeps it: NVIDIA's mean_iu, HRNet-Seg's best_mIoU.)"""
    import numpy as np

    _, folder = trained
    snapshot_file = folder.checkpoints / "numpy.ckpt"
    state = torch.load(folder.best_checkpoint(), weights_only=True)
    torch.save({**state, "best_mIoU": np.float64(0.5)}, snapshot_file)
    try:
        assert main(["eval", str(snapshot_file), "--out", str(tmp_path / "eval.json"), "--no-progress"]) == 0
    finally:
        snapshot_file.unlink()


def test_runs_that_is_a_file_or_cannot_be_written_is_one_line_and_exit_2(tiny, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs.txt"
    runs.write_text("not a folder\n")
    assert train(tiny, runs) == 2
    assert only_line(capsys.readouterr().err) == (
        f"segrun: error: {runs}: is a file, not a folder for run folders; pass --runs FOLDER (or set SEGRUN_RUNS)")
    assert runs.read_text() == "not a folder\n"

    def refuse(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("segrun.run_folder.write_atomically", refuse)  # root ignores file modes; refuse as a mount would
    assert train(tiny, tmp_path / "readonly") == 2
    line = only_line(capsys.readouterr().err)
    assert line.startswith(f"segrun: error: {tmp_path / 'readonly'}: cannot write the run folder tiny-")
    assert line.endswith("there (Permission denied); pass --runs a writable folder (or set SEGRUN_RUNS)")


def test_validate_opens_init_and_names_what_is_wrong_with_it(trained, tmp_path, capsys):
    spec_file, folder = trained
    files = bad_checkpoints(folder)
    try:
        for kind, path in files.items():
            capsys.readouterr()
            assert main(["validate", str(spec_file), f"init={path}"]) == 2, kind
            line = only_line(capsys.readouterr().err)
            expected = "none of its tensors fit this model" if kind == "other model" else EXPECTED[kind]
            named = f"{spec_file}: init: " if kind == "loop" else ""  # (a file that is not there: spec and key first)
            assert line.startswith(f"segrun: error: {named}{path}: {expected}"), line
    finally:
        for path in files.values():
            path.unlink()
    assert main(["validate", str(spec_file), f"init={folder.path}"]) == 0
    out = capsys.readouterr().out
    assert "init: " in out and f"tensors from {folder.best_checkpoint()}; missing: none" in out


# ---- data faults --------------------------------------------------------------------------------

def break_files(split, faults=("truncated", "resized", "valued")) -> dict:
    """Faults in the first three pairs of a dataset split: a truncated label PNG, an image of
    another size than its label, a label value that is neither a class nor ignore. Returns {fault:
    file, "originals": {file: bytes}}; restore() undoes them."""
    import cv2

    files = {"truncated": split.labels[0], "resized": split.images[1], "valued": split.labels[2]}
    broken = {fault: files[fault] for fault in faults}
    broken["originals"] = {files[fault]: files[fault].read_bytes() for fault in faults}
    if "truncated" in faults:
        files["truncated"].write_bytes(broken["originals"][files["truncated"]][:200])
    if "resized" in faults:
        image = cv2.imread(str(files["resized"]))
        cv2.imwrite(str(files["resized"]), cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2)))
    if "valued" in faults:
        label = cv2.imread(str(files["valued"]), cv2.IMREAD_UNCHANGED)
        label[:2, :3] = 200
        cv2.imwrite(str(files["valued"]), label)
    return broken


def restore(broken: dict) -> None:
    for path, data in broken["originals"].items():
        path.write_bytes(data)


FAULTS = {"truncated": "not a readable image; replace it or remove it with its image",
          "valued": "holds label value 200 (6 pixels), neither a class (0 to 18) nor the ignore index 255; fix or "
                    "remove the file"}


def dataset_split(spec_file, split: str):
    from segrun.data import DATASETS, resolve_root
    from segrun.data.datamodule import ensure_dataset

    loaded = build.load_spec(spec_file)
    ensure_dataset(loaded.data, progress=False)
    return DATASETS[loaded.data.dataset](resolve_root(loaded.data.root), split)


def test_a_bad_label_value_stops_training_with_one_line_naming_the_file(tiny, tmp_path, capsys):
    broken = break_files(dataset_split(tiny, "train"), ["valued"])
    capsys.readouterr()
    assert train(tiny, tmp_path / "runs") == 2
    assert only_line(capsys.readouterr().err) == f"segrun: error: {broken['valued']}: {FAULTS['valued']}"
    folder = run_folder(tiny, tmp_path / "runs")
    assert folder.spec_file.is_file() and not folder.finished


@pytest.mark.parametrize("fault", ["truncated", "resized", "valued"])
def test_each_data_fault_is_one_line_in_eval_and_data_stats(trained, fault, tmp_path, capsys):
    spec_file, folder = trained
    broken = break_files(dataset_split(spec_file, "val"), [fault])
    try:
        before = snapshot(folder)
        commands = [["eval", str(folder.path), "--out", str(tmp_path / "eval.json"), "--no-progress"],
                    ["data", "stats", str(spec_file)]]  # stats reads the labels and the images' sizes
        for command in commands:
            capsys.readouterr()
            assert main(command) == 2, command
            line = only_line(capsys.readouterr().err)
            if fault == "resized":
                label = dataset_split(spec_file, "val").labels[1]
                assert line == (f"segrun: error: {label}: 64x96 but its image {broken['resized']} is 32x48; an image "
                                "and its label must be the same size"), line
            else:
                assert line == f"segrun: error: {broken[fault]}: {FAULTS[fault]}", line
        assert snapshot(folder) == before and not (tmp_path / "eval.json").exists()
    finally:
        restore(broken)


def test_validate_data_reads_every_file_and_lists_all_bad_ones(trained, capsys):
    spec_file, _ = trained
    assert main(["validate", str(spec_file), "--data", "--no-progress"]) == 0
    assert "every image and label of train and val read; sizes and label values ok" in capsys.readouterr().out
    broken = break_files(dataset_split(spec_file, "val"))
    try:
        assert main(["validate", str(spec_file), "--data", "--no-progress"]) == 2
        captured = capsys.readouterr()
        listed = captured.out.splitlines()[-3:]  # after the lines of the checks that passed
        for fault, line in zip(("truncated", "resized", "valued"), listed):
            assert str(broken[fault]) in line, (fault, line)
        root = dataset_split(spec_file, "val").root
        assert only_line(captured.err) == (f"segrun: error: {root}: 3 bad files (listed above); replace or remove "
                                           "them, then validate again")
    finally:
        restore(broken)


def test_a_fault_in_a_dataloader_worker_is_still_one_line(trained):
    from torch.utils.data import DataLoader

    from segrun.data.labelled_images import DataFault

    spec_file, _ = trained
    val = dataset_split(spec_file, "val")
    broken = break_files(val)
    try:
        with pytest.raises(DataFault) as raised:
            next(iter(DataLoader(val, batch_size=1, num_workers=1)))
        assert str(raised.value) == f"{broken['truncated']}: {FAULTS['truncated']}"
    finally:
        restore(broken)


# ---- large images -------------------------------------------------------------------------------

def test_sliding_labels_hold_one_row_of_windows_and_match_whole_sliding_logits():
    from segrun.inference import sliding_labels, sliding_logits

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    image = torch.randn(1, 3, 50, 70)
    held = []

    def forward(crop):
        return conv(crop)

    def crop(top, left, height, width):
        return image[..., top:top + height, left:left + width]

    real_zeros = torch.zeros

    def recording_zeros(*size, **kwargs):
        held.append(size)
        return real_zeros(*size, **kwargs)

    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "zeros", recording_zeros)
        labels = sliding_labels(forward, crop, 50, 70, (16, 24), progress=False)
        expected = sliding_logits(forward, image, (16, 24)).argmax(1)[0]
    assert torch.equal(labels.long(), expected)
    assert held[0] == (5, 16, 70)  # classes x window height x image width, not the image's scores


def test_predict_takes_a_large_image_in_windows_or_says_which_option(trained, tmp_path, monkeypatch, capsys):
    import cv2
    import numpy as np

    from segrun import prediction

    _, folder = trained
    monkeypatch.setattr(prediction, "LARGEST_WHOLE_IMAGE", 64 * 96)
    monkeypatch.setattr(prediction, "LARGE_IMAGE_WINDOW", (64, 96))
    large = tmp_path / "large.png"
    cv2.imwrite(str(large), np.random.default_rng(0).integers(0, 255, (150, 250, 3), dtype=np.uint8))
    before = snapshot(folder)
    assert main(["predict", str(folder.path), str(large), "--out", str(tmp_path / "out"), "--format", "trainid"]) == 0
    assert "150x250 in 64x96 windows" in capsys.readouterr().err  # the progress bar
    assert cv2.imread(str(tmp_path / "out" / "large.png"), cv2.IMREAD_UNCHANGED).shape == (150, 250)
    assert main(["predict", str(folder.path), str(large), "--out", str(tmp_path / "out2"), "--scales", "0.5,1.0"]) == 2
    assert only_line(capsys.readouterr().err) == (
        f"segrun: error: {large}: 150x250 is larger than segrun predicts whole (6,144 pixels), so it is predicted in "
        "sliding windows at scale 1.0 only; pass --scales 1.0")
    assert snapshot(folder) == before and not (tmp_path / "out2").exists()


def test_an_image_too_large_to_predict_whole_names_the_sliding_option():
    from segrun.errors import UserError
    from segrun.inference import predict
    from segrun.models import create

    model = create("hrnet", 3, backbone="hrnet_w18_small").eval()
    with pytest.raises(UserError, match=r"a 2049x2048 image is larger than segrun predicts whole .* segrun eval "
                                        r"--sliding 1024x1024, or eval.sliding / test.sliding in the spec$"):
        predict(model, torch.zeros(1, 3, 2049, 2048))


def test_a_truncated_metrics_json_is_named_by_report_and_a_rerun_evaluates_again(tiny, tmp_path, capsys):
    assert train(tiny, tmp_path / "runs") == 0
    assert train(tiny, tmp_path / "other", "seed=1") == 0
    folder, other = run_folder(tiny, tmp_path / "runs"), next((tmp_path / "other").iterdir())
    whole = folder.metrics_file.read_bytes()
    folder.metrics_file.write_bytes(whole[: len(whole) // 2])  # a copy cut short
    capsys.readouterr()

    assert main(["report", str(folder.path), str(other)]) == 0
    captured = capsys.readouterr()
    (warning,) = captured.err.strip().splitlines()
    assert warning.startswith(f"segrun: warning: {folder.metrics_file}: not readable as JSON (JSONDecodeError: ")
    assert warning.endswith("; left out of the report") and "tiny " in captured.out  # the other run is there

    assert train(tiny, tmp_path / "runs") == 0  # no --force needed
    out = capsys.readouterr().out
    assert f"{folder.metrics_file}: not readable as JSON" in out and "the trained run is evaluated again" in out
    assert json.loads(folder.metrics_file.read_text())["mIoU"] == json.loads(whole)["mIoU"]
    assert [p.name.split(".unreadable-")[0] for p in folder.path.glob("metrics.json.unreadable-*")] == ["metrics.json"]


def test_report_names_a_spec_toml_edited_after_training(tiny, tmp_path, capsys):
    assert train(tiny, tmp_path / "runs") == 0
    folder = run_folder(tiny, tmp_path / "runs")
    folder.spec_file.write_text(folder.spec_file.read_text().replace("lr = 0.003", "lr = 0.03"))
    capsys.readouterr()
    assert main(["report", str(folder.path)]) == 0
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith(f"segrun: warning: {folder.spec_file}: not the spec that trained (its hash ")


def test_files_segrun_writes_have_the_permissions_a_plain_write_gives(tmp_path):
    import os

    from segrun.atomic_write import write_atomically

    before = os.umask(0o027)
    try:
        write_atomically(tmp_path / "shared.json", b"{}")
    finally:
        os.umask(before)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o640  # 0666 less the umask, not mkstemp's 0600


def test_dropout_and_augmentations_draw_from_streams_of_their_own():
    from segrun.data.sampling import augmentation_seed
    from segrun.step_seeds import step_seed

    assert all(step_seed(0, 1, b, 0) != augmentation_seed(0, 1, 0, b) for b in range(50))
