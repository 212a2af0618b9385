"""``lmisa preprocess`` on the command line: the data set is checked first, and a cache folder is never mixed."""

from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from lmisa.cli import app

runner = CliRunner()
SMALL = ["--size", "16", "16", "-j", "1"]


def test_caches_every_case_and_skips_them_the_second_time(nnunet_factory, tmp_path: Path) -> None:
    ds = nnunet_factory("ds", n_cases=2, shape=(3, 20, 20))
    out = tmp_path / "cache"
    first = runner.invoke(app, ["preprocess", str(ds), str(out), *SMALL])
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.glob("*.npz")) == ["case_000.npz", "case_001.npz"]
    assert "label" in np.load(out / "case_000.npz")
    again = runner.invoke(app, ["preprocess", str(ds), str(out), *SMALL])
    assert again.exit_code == 0 and "2 of 2 cases cached" in again.output


def test_an_undeclared_label_value_is_refused_naming_the_file(nnunet_factory, tmp_path: Path) -> None:
    ds = nnunet_factory("ds", n_cases=2, shape=(3, 20, 20))
    path = ds / "labelsTr" / "case_001.nii.gz"
    label = nib.load(path)
    data = np.asarray(label.dataobj).copy()
    data[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(data, label.affine), path)
    result = runner.invoke(app, ["preprocess", str(ds), str(tmp_path / "cache"), *SMALL])
    assert result.exit_code == 1
    assert "case_001" in result.output and "Traceback" not in result.output
    assert not list((tmp_path / "cache").glob("*.npz"))


def test_a_data_set_without_dataset_json_says_so(nnunet_factory, tmp_path: Path) -> None:
    ds = nnunet_factory("ds", n_cases=1, shape=(3, 20, 20))
    (ds / "dataset.json").unlink()
    result = runner.invoke(app, ["preprocess", str(ds), str(tmp_path / "cache"), *SMALL])
    assert result.exit_code == 1 and "dataset.json" in result.output


def test_a_folder_cached_with_other_settings_is_refused(nnunet_factory, tmp_path: Path) -> None:
    ds = nnunet_factory("ds", n_cases=1, shape=(3, 20, 20))
    out = tmp_path / "cache"
    assert runner.invoke(app, ["preprocess", str(ds), str(out), *SMALL]).exit_code == 0
    plans = (out / "plans.json").read_text()
    other = runner.invoke(app, ["preprocess", str(ds), str(out), "--size", "24", "24", "-j", "1"])
    assert other.exit_code == 1 and "other settings" in other.output
    assert (out / "plans.json").read_text() == plans
    assert np.load(out / "case_000.npz")["input"].shape[-2:] == (16, 16)


def test_a_users_plans_json_is_never_overwritten(nnunet_factory, tmp_path: Path) -> None:
    ds = nnunet_factory("ds", n_cases=1, shape=(3, 20, 20))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "plans.json").write_text('{"mine": 1}')
    result = runner.invoke(app, ["preprocess", str(ds), str(out), *SMALL])
    assert result.exit_code == 1 and "not the plans.json of an lmisa run or cache" in result.output
    assert (out / "plans.json").read_text() == '{"mine": 1}'


def test_case_files_without_plans_json_are_refused(nnunet_factory, tmp_path: Path) -> None:
    ds = nnunet_factory("ds", n_cases=1, shape=(3, 20, 20))
    out = tmp_path / "cache"
    out.mkdir()
    (out / "case_000.npz").write_bytes(b"mine")
    result = runner.invoke(app, ["preprocess", str(ds), str(out), *SMALL])
    assert result.exit_code == 1 and "without a plans.json" in result.output
    assert (out / "case_000.npz").read_bytes() == b"mine"


def test_a_folder_cached_without_labels_is_refused_for_labels(nnunet_factory, tmp_path: Path) -> None:
    ds = nnunet_factory("ds", n_cases=1, shape=(3, 20, 20))
    out = tmp_path / "cache"
    assert runner.invoke(app, ["preprocess", str(ds), str(out), *SMALL, "--no-labels"]).exit_code == 0
    result = runner.invoke(app, ["preprocess", str(ds), str(out), *SMALL])
    assert result.exit_code == 1 and "cached without labels" in result.output
    assert "label" not in np.load(out / "case_000.npz")


def test_a_broken_cached_case_is_named(nnunet_factory, tmp_path: Path) -> None:
    ds = nnunet_factory("ds", n_cases=1, shape=(3, 20, 20))
    out = tmp_path / "cache"
    assert runner.invoke(app, ["preprocess", str(ds), str(out), *SMALL]).exit_code == 0
    (out / "case_000.npz").write_bytes(b"broken")
    result = runner.invoke(app, ["preprocess", str(ds), str(out), *SMALL])
    assert result.exit_code == 1 and "case_000.npz: unreadable cached case" in result.output


def test_the_help_gives_the_cache_workers_limit_the_code_has() -> None:
    import re

    from lmisa.preprocess import MAX_CACHE_WORKERS

    result = runner.invoke(app, ["preprocess", "--help"], terminal_width=200)
    assert f"at most {MAX_CACHE_WORKERS}." in re.sub(r"[\s│]+", " ", result.output)
