"""The run folder rule: never reuse another run, but start again where no epoch ever finished."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmisa.errors import LmisaError
from lmisa.training.run import never_trained, prepare_run_dir


def test_new_folder_is_made(tmp_path: Path) -> None:
    run = prepare_run_dir(tmp_path / "a" / "run", resume=False)
    assert run.is_dir()


def test_failed_start_can_start_again(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "train.log").write_text("error: bad data\n")
    (run / "config.yaml").write_text("{}\n")
    assert never_trained(run)
    assert prepare_run_dir(run, resume=False) == run
    assert (run / "train.log").read_text() == "error: bad data\n"  # the run's own log is kept (appended to)


def test_resume_without_checkpoint_says_to_start_again(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_text("")
    with pytest.raises(LmisaError, match="without --resume to start it again"):
        prepare_run_dir(run, resume=True)


def test_trained_run_is_never_reused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest.pt").write_bytes(b"x")
    assert not never_trained(run)
    with pytest.raises(LmisaError, match="not empty; pass --resume"):
        prepare_run_dir(run, resume=False)
    assert prepare_run_dir(run, resume=True) == run


def test_folder_with_user_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(LmisaError, match="not empty"):
        prepare_run_dir(tmp_path, resume=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for resume in (False, True):
        with pytest.raises(LmisaError, match="not a folder"):
            prepare_run_dir(afile, resume=resume)
    assert afile.read_text() == "mine"
