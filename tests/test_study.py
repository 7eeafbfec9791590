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


def fake_run(folder: Path, spec, test_miou: float, seed: int) -> None:
    """A finished run folder of `spec` whose test protocol scored test_miou (no training needed to
    check how the report reads runs)."""
    from segrun import spec as spec_module
    from segrun.spec.loader import to_table

    folder.mkdir(parents=True)
    seeded = attrs.evolve(spec, seed=seed)
    (folder / "spec.toml").write_text(spec_module.dumps(seeded))
    test = {"mIoU": test_miou, "options": to_table(seeded.test)}
    (folder / "metrics.json").write_text(json.dumps({"mIoU": test_miou - 0.01, "test": test}))


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
    assert line_of("MS OCR [0.5, 1., 2.] / Baseline (wCE, ImageNet)")[-4:] == ["82.00", "±", "0.00", "+0.04"]
    assert line_of("MS OCR [0.5, 1.] / Baseline (wCE, ImageNet)")[-4:] == ["81.50", "±", "0.00", "+0.24"]
    assert line_of("OCR / wRMI")[-2:] == ["0", "-"]  # no run of that spec
    assert "3 of 63 published rows have reproduced runs" in out[-1]
