"""The study's manifest (specs/study/results.toml): every published row names a spec or chain that
loads, with the row's model and dataset, and its evaluation overrides apply."""
import json
from pathlib import Path

import attrs
import pytest

from segrun.cli import main
from segrun.published import evaluation_spec, is_chain, load_manifest

MANIFEST = Path(__file__).resolve().parents[1] / "specs" / "study" / "results.toml"
ROWS = load_manifest(MANIFEST)


def test_the_manifest_holds_every_published_table():
    tables = {row.table for row in ROWS}
    assert tables == {"Different Models", "Different Loss Functions", "Closer look at RMI loss", "Available Data",
                      "Going Further", "PASCAL VOC2010 Context"}
    assert len([row for row in ROWS if row.dataset == "pascal_context59"]) == 24  # 4 models x 3 settings x plain/MS
    for row in ROWS:
        assert len(row.published_runs) == 3 and row.published_best in row.published_runs
        if "average" not in (row.note or ""):  # one row where the study's mean is not its runs' (noted)
            assert round(sum(row.published_runs) / 3, 2) == pytest.approx(row.published_mean, abs=0.011)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"{row.dataset}:{row.label}")
def test_each_row_loads_with_its_model_and_dataset(row, capsys):
    spec = evaluation_spec(MANIFEST, row)
    assert (spec.model.name, spec.data.dataset) == (row.model, row.dataset)
    assert spec.test is not None  # the reported numbers come from a test protocol
    if "MS OCR [0.5, 1.]" in row.model_label:
        assert spec.test.model_scales == (0.5, 1.0)
    if row.model_label.startswith("MS OCR [0.5, 1., 2.]"):
        assert spec.test.model_scales == (0.5, 1.0, 2.0)
    path = MANIFEST.parent / row.spec
    command = ["chain", str(path), "--dry-run", "--runs", "/nonexistent-runs"] if is_chain(path) else [
        "show", str(path), *row.overrides]
    assert main(command) == 0
    capsys.readouterr()


def fake_run(folder: Path, spec, test_miou: float, seed: int, init: Path | None = None) -> Path:
    """A finished run folder of `spec` whose test protocol scored test_miou (no training needed to
    check how the report reads runs), started from the checkpoint `init`; returns its checkpoint."""
    from segrun import spec as spec_module
    from segrun.lineage import file_sha256
    from segrun.spec.loader import to_table

    folder.mkdir(parents=True)
    seeded = attrs.evolve(spec, seed=seed, init=None if init is None else str(init))
    (folder / "spec.toml").write_text(spec_module.dumps(seeded))
    test = {"mIoU": test_miou, "options": to_table(seeded.test)}
    lineage = None if init is None else {"path": str(init), "sha256": file_sha256(init)}
    (folder / "metrics.json").write_text(json.dumps({"mIoU": test_miou - 0.01, "test": test, "init": lineage}))
    checkpoint = folder / "checkpoints" / "best-epoch=001.ckpt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(f"weights of {folder.name}".encode())
    return checkpoint


def test_report_puts_reproduced_runs_beside_the_published_numbers(tmp_path, capsys):
    rows = {row.label: row for row in ROWS if row.dataset == "cityscapes"}
    hrnet = evaluation_spec(MANIFEST, rows["HRNet / Baseline (wCE, ImageNet)"])
    ms_full = evaluation_spec(MANIFEST, rows["MS OCR [0.5, 1., 2.] / Baseline (wCE, ImageNet)"])
    for seed, miou in enumerate((0.8100, 0.8120, 0.8140)):
        fake_run(tmp_path / "runs" / f"hrnet-{seed}", hrnet, miou, seed)
    fake_run(tmp_path / "runs" / "ms", ms_full, 0.8200, 0)
    # the same MS OCR run, evaluated again over [0.5, 1.0] as the study's other row
    ms_half = evaluation_spec(MANIFEST, rows["MS OCR [0.5, 1.] / Baseline (wCE, ImageNet)"])
    from segrun.spec.loader import to_table
    (tmp_path / "runs" / "ms" / "eval-ms05.json").write_text(json.dumps(
        {"protocol": "test", "options": to_table(ms_half.test), "mIoU": 0.8150}))

    assert main(["report", str(tmp_path / "runs"), "--study", str(MANIFEST)]) == 0
    out = capsys.readouterr().out.splitlines()

    def line_of(label: str) -> list[str]:
        return next(line for line in out if line.startswith("cityscapes ") and f" {label} " in line).split()

    assert line_of("HRNet / Baseline (wCE, ImageNet)")[-4:] == ["81.20", "±", "0.20", "+0.07"]  # 81.0/81.2/81.4 vs 81.13
    assert line_of("MS OCR [0.5, 1., 2.] / Baseline (wCE, ImageNet)")[-3:] == ["82.00", "(n=1)", "+0.04"]
    assert line_of("MS OCR [0.5, 1.] / Baseline (wCE, ImageNet)")[-3:] == ["81.50", "(n=1)", "+0.24"]
    assert line_of("OCR / wRMI")[-2:] == ["0", "-"]  # no run of that spec
    assert "3 of 63 published rows have reproduced runs" in out[-1]


def study_report(runs: Path, capsys) -> list[str]:
    assert main(["report", str(runs), "--study", str(MANIFEST)]) == 0
    return capsys.readouterr().out.splitlines()


def test_a_run_that_is_not_the_rows_recipe_is_named_and_never_counted(tmp_path, capsys):
    """A 4-step run of a small backbone under the study spec's name is not a reproduction of its row;
    what the machine decides (data folder, loader workers, what "auto" became, where the weights
    file lies) does not make a run another recipe."""
    row = next(row for row in ROWS if row.label == "HRNet / Baseline (wCE, ImageNet)")
    hrnet = evaluation_spec(MANIFEST, row)
    smoke = attrs.evolve(hrnet, model=attrs.evolve(hrnet.model, backbone="hrnet_w18"),
                         trainer=attrs.evolve(hrnet.trainer, max_steps=4))
    fake_run(tmp_path / "runs" / "smoke", smoke, 0.06, 0)
    out = study_report(tmp_path / "runs", capsys)
    line = next(index for index, line in enumerate(out) if " HRNet / Baseline (wCE, ImageNet) " in line)
    assert out[line].split()[-2:] == ["0", "-"]
    assert out[line + 1] == (f"    not counted, not this row's recipe: {tmp_path / 'runs' / 'smoke'} (differs: "
                             "model.backbone, trainer.max_steps)")
    assert "0 of 63 published rows have reproduced runs" in out[-1]

    machine = attrs.evolve(hrnet, data=attrs.evolve(hrnet.data, root="/elsewhere/cityscapes", num_workers=3),
                           model=attrs.evolve(hrnet.model, pretrained="/weights/hrnetv2_w48_imagenet_pretrained.pth"),
                           trainer=attrs.evolve(hrnet.trainer, precision="bf16-mixed", memory_format="channels_last"))
    fake_run(tmp_path / "runs" / "cluster", machine, 0.8113, 1)
    out = study_report(tmp_path / "runs", capsys)
    line = next(line for line in out if " HRNet / Baseline (wCE, ImageNet) " in line)
    assert line.split()[-4:] == ["1", "81.13", "(n=1)", "+0.00"]

    assert main(["report", str(tmp_path / "runs"), "--study", str(MANIFEST), "--plot", str(tmp_path / "fig.png")]) == 0
    assert f"{tmp_path / 'fig-study.png'}: published means beside reproduced ones" in capsys.readouterr().out
    assert (tmp_path / "fig-study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_chain_counts_only_when_every_stage_was_its_recipe(tmp_path, capsys):
    from segrun.published import chain_specs

    row = next(row for row in ROWS if row.spec == "cityscapes_hrnet_coarse_chain.toml")
    stages = chain_specs(MANIFEST, row)
    checkpoint = None
    for index, stage in enumerate(stages):
        checkpoint = fake_run(tmp_path / "runs" / f"stage{index}", stage, 0.82, 0, init=checkpoint)
    out = study_report(tmp_path / "runs", capsys)
    assert next(line for line in out if f" {row.label} " in line).split()[-4:] == ["1", "82.00", "(n=1)", "+0.09"]

    # the coarse stage trained at another lr: the last stage's run is no longer the row's recipe
    coarse = tmp_path / "runs" / "stage1" / "spec.toml"
    coarse.write_text(coarse.read_text().replace("lr = 0.001", "lr = 0.002"))
    out = study_report(tmp_path / "runs", capsys)
    line = next(index for index, line in enumerate(out) if f" {row.label} " in line)
    assert out[line].split()[-2:] == ["0", "-"]
    assert out[line + 1].endswith("(differs: stage 1 optimizer.lr)")
    (tmp_path / "runs" / "stage0" / "checkpoints" / "best-epoch=001.ckpt").write_bytes(b"retrained")
    assert "init (stage 0's checkpoint changed since)" in "\n".join(study_report(tmp_path / "runs", capsys))


def test_a_run_whose_spec_toml_was_edited_after_training_is_never_counted(tmp_path, capsys):
    from segrun.spec import spec_hash

    row = next(row for row in ROWS if row.label == "HRNet / Baseline (wCE, ImageNet)")
    hrnet = evaluation_spec(MANIFEST, row)
    fake_run(tmp_path / "runs" / "edited", hrnet, 0.8113, 0)
    metrics_file = tmp_path / "runs" / "edited" / "metrics.json"
    trained_as = attrs.evolve(hrnet, optimizer=attrs.evolve(hrnet.optimizer, lr=0.02))  # what really trained
    metrics_file.write_text(json.dumps({**json.loads(metrics_file.read_text()), "spec_hash": spec_hash(trained_as)}))
    out = study_report(tmp_path / "runs", capsys)
    line = next(index for index, line in enumerate(out) if " HRNet / Baseline (wCE, ImageNet) " in line)
    assert out[line].split()[-2:] == ["0", "-"] and "spec.toml (edited after training)" in out[line + 1]
