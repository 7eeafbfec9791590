"""The study's manifest (specs/study/results.toml): every published row names a spec or chain that
loads, with the row's model and dataset, and its evaluation overrides apply."""
from pathlib import Path

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
