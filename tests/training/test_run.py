"""The run folder rule: never reuse another run, but start again where a run stopped before its first epoch ended."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmisa.errors import LmisaError
from lmisa.training.run import LOCK, never_trained, prepare_run_dir, read_run_split, run_lock


def _early_run(run: Path, *extra: str) -> Path:
    """A folder as a run leaves it when stopped before its first epoch ended, plus ``extra`` files."""
    (run / "checkpoints").mkdir(parents=True)
    for name in (LOCK, "train.log", "config.yaml", *extra):
        (run / name).write_text(f"{name}\n")
    return run


def test_new_folder_is_made(tmp_path: Path) -> None:
    run = prepare_run_dir(tmp_path / "a" / "run", resume=False)
    assert run.is_dir()


def test_failed_start_can_start_again(tmp_path: Path) -> None:
    run = _early_run(tmp_path / "run")
    assert never_trained(run)
    assert prepare_run_dir(run, resume=False) == run
    assert (run / "train.log").read_text() == "train.log\n"  # the run's own log is kept (appended to)


def test_resume_without_checkpoint_says_to_start_again(tmp_path: Path) -> None:
    with pytest.raises(LmisaError, match="without --resume to start it again"):
        prepare_run_dir(_early_run(tmp_path / "run"), resume=True)


@pytest.mark.parametrize("extra", ["log.csv", "progress.png", "DONE", "notes.txt", "checkpoints/best.pt",
                                   "checkpoints/.latest.pt.tmp"])
def test_any_sign_of_a_finished_epoch_or_of_the_user_keeps_the_folder(tmp_path: Path, extra: str) -> None:
    run = _early_run(tmp_path / "run", extra)
    assert not never_trained(run)
    with pytest.raises(LmisaError, match="not empty"):
        prepare_run_dir(run, resume=False)
    assert (run / extra).read_text() == f"{extra}\n"


def test_a_folder_no_run_started_in_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("mine")  # the user's own config, say: no run.lock
    assert not never_trained(tmp_path)
    with pytest.raises(LmisaError, match="not empty"):
        prepare_run_dir(tmp_path, resume=False)
    assert (tmp_path / "config.yaml").read_text() == "mine"


def test_a_folder_a_run_is_working_in_is_refused(tmp_path: Path) -> None:
    run = _early_run(tmp_path / "run")
    with run_lock(run):  # a run still in its first epoch
        assert not never_trained(run)
        for resume in (False, True):
            with pytest.raises(LmisaError, match="another training run is working"):
                prepare_run_dir(run, resume=resume)
        with pytest.raises(LmisaError, match="another training run is working"):
            with run_lock(run):
                pass
    assert never_trained(run)  # released when the run ends


def test_trained_run_is_never_reused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest.pt").write_bytes(b"x")
    assert not never_trained(run)
    with pytest.raises(LmisaError, match="not empty; pass --resume"):
        prepare_run_dir(run, resume=False)
    assert prepare_run_dir(run, resume=True) == run


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for resume in (False, True):
        with pytest.raises(LmisaError, match="not a folder"):
            prepare_run_dir(afile, resume=resume)
    assert afile.read_text() == "mine"


@pytest.mark.parametrize("content, message", [
    (None, r"split\.json: not found"),
    ('{"source_train": ["a"]}', r'split\.json: "source_val" must be a list of case names'),
    ('{"source_train": ["a"], "source_val": ["b"], "target_train": "c"}', r'"target_train" must be a list'),
    ("{", r"split\.json: invalid JSON"),
    ('{"source_train": [1], "source_val": []}', r'"source_train" must be a list of case names'),
])
def test_a_runs_split_that_cannot_be_used_is_named(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "split.json").write_text(content)
    with pytest.raises(LmisaError, match=message):
        read_run_split(tmp_path)


def test_a_runs_split_without_target_cases_is_read(tmp_path: Path) -> None:
    (tmp_path / "split.json").write_text('{"source_train": ["a"], "source_val": ["b"], "source": "/d"}')
    assert read_run_split(tmp_path)["source_val"] == ["b"]
