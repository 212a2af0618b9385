"""The visual report: per-case PNGs, the run's curves, index.html/index.md with the evaluation table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmisa.errors import LmisaError
from lmisa.io import MedicalImage, read_label, write_image
from lmisa.report import _display_flips, make_report, markdown_to_html, representative_slices

LABELS = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
TINY = {
    "data": {"size": [32, 32], "spacing": [1.5, 1.5]},
    "model": {"widths": [8, 16]},
    "train": {"batch_size": 2, "val_batches": 1, "epochs": 1, "steps_per_epoch": 1, "device": "cpu"},
}
SUMMARY = """# Evaluation (volume, 2 cases)

| Structure | Dice (%) | ASSD (vox) |
|---|---:|---:|
| liver | 80.00 ± 1.00 | 2.00 ± 0.50 |
| **Mean** | **80.00** | **2.00** |

mean ± population std over cases.
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run, data set with labels, prediction folder): predictions are the reference labels with one organ dropped."""
    from conftest import write_nnunet_dataset

    from lmisa.training import train

    tmp = tmp_path_factory.mktemp("rep")
    src = write_nnunet_dataset(tmp / "src", n_cases=3, shape=(5, 24, 24), spacing=(3.0, 1.5, 1.5), labels=LABELS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMISA_CACHE", str(tmp / "cache"))
        run = train(src, None, out=tmp / "run", variant="source_only", overrides=TINY, progress=False)
    preds = tmp / "pred"
    for f in sorted((src / "labelsTr").iterdir()):
        lab = read_label(f)
        lab.array[lab.array == 4] = 0
        write_image(preds / f.name, lab)
    return run, src, preds


def test_report_with_reference(setup, tmp_path: Path) -> None:
    run, src, preds = setup
    (tmp_path / "summary.md").write_text(SUMMARY, encoding="utf-8")
    index = make_report(run, preds, src, ref_dir=src, out_dir=tmp_path / "rep", max_cases=2, summary=tmp_path / "summary.md")
    assert index == tmp_path / "rep" / "index.html"
    pngs = sorted((tmp_path / "rep" / "cases").glob("*.png"))
    assert [p.name for p in pngs] == ["case_000.png", "case_001.png"]  # max_cases
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size < 300_000
    assert (tmp_path / "rep" / "progress.png").is_file()
    html = index.read_text(encoding="utf-8")
    assert "cases/case_000.png" in html and "progress.png" in html
    assert "<table>" in html and "<td>80.00 ± 1.00</td>" in html and "<b>Mean</b>" in html
    assert "spleen 0.0" in html and "liver 100.0" in html  # per-case Dice in the captions
    assert "1 more case(s) not shown" in html
    md = (tmp_path / "rep" / "index.md").read_text(encoding="utf-8")
    assert "![case_000](cases/case_000.png)" in md and "| liver | 80.00 ± 1.00 |" in md
    with pytest.raises(LmisaError, match="exists"):
        make_report(run, preds, src, ref_dir=src, out_dir=tmp_path / "rep")
    make_report(run, preds, src, out_dir=tmp_path / "rep", overwrite=True, max_cases=1)


def test_report_without_reference_defaults_into_pred_dir(setup, tmp_path: Path) -> None:
    run, src, preds = setup
    local = tmp_path / "pred"
    local.mkdir()
    name = "case_002.nii.gz"
    (local / name).write_bytes((preds / name).read_bytes())
    (local / "summary.md").write_text(SUMMARY, encoding="utf-8")  # picked up from pred_dir
    index = make_report(None, local, src / "imagesTr")
    assert index == local / "report" / "index.html"
    html = index.read_text(encoding="utf-8")
    assert "case_002" in html and "no reference" in html and "<table>" in html
    assert not (local / "report" / "progress.png").exists()  # no run given
    assert (local / "report" / "cases" / "case_002.png").is_file()


def test_report_needs_matching_predictions(setup, tmp_path: Path) -> None:
    run, src, _ = setup
    (tmp_path / "empty").mkdir()
    with pytest.raises(LmisaError, match="no prediction matches"):
        make_report(run, tmp_path / "empty", src)


def test_a_damaged_plans_file_is_named(setup, tmp_path: Path) -> None:
    import shutil

    run, src, preds = setup
    copy = shutil.copytree(run, tmp_path / "run")
    (copy / "plans.json").write_text("{not json")
    with pytest.raises(LmisaError, match=r"plans\.json: invalid JSON \(line 1"):
        make_report(copy, preds, src, out_dir=tmp_path / "rep")


def test_representative_slices() -> None:
    lab = np.zeros((20, 4, 4), np.uint8)
    lab[5:15, :2, :2] = 1
    lab[7, :, :] = 2
    lab[13, :3, :3] = 3
    # foreground on slices 5..14, cut into [5..8], [9..11], [12..14]; the fullest of each (first on ties)
    assert representative_slices(lab) == [7, 9, 13]
    assert representative_slices(np.zeros((9, 2, 2), np.uint8)) == [2, 4, 6]
    assert representative_slices(lab[:1]) == [0]
    one = np.zeros((5, 2, 2), np.uint8)
    one[3] = 1
    assert representative_slices(one) == [3]


def test_display_orientation_and_markdown() -> None:
    assert _display_flips(np.diag([1.0, 1.0, 3.0, 1.0])) == (True, True)  # RAS-stored: flip both
    assert _display_flips(np.diag([-1.0, -1.0, 3.0, 1.0])) == (False, False)  # LPS-like: as stored
    coronal = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    assert _display_flips(coronal) == (False, False)
    html = markdown_to_html("# T\n\n| a | b |\n|---|---:|\n| x<y | **1** |\n\n- one\n- two\ntext")
    assert "<h3>T</h3>" in html and "<th>a</th>" in html and "<td>x&lt;y</td>" in html and "<b>1</b>" in html
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in html and "<p>text</p>" in html


def test_case_figure_handles_a_2d_image(tmp_path: Path) -> None:
    from lmisa.report import case_figure

    img = MedicalImage(np.random.default_rng(0).random((16, 20)).astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    pred = np.zeros((16, 20), np.uint8)
    pred[4:9, 5:12] = 1
    assert case_figure(img, pred, None, {"background": 0, "organ": 1}, tmp_path / "x.png") == [0]
    assert (tmp_path / "x.png").is_file()
