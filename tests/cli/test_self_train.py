"""``lmisa self-train`` on the command line."""

from pathlib import Path

from typer.testing import CliRunner

from lmisa.cli import app

runner = CliRunner()


def test_self_train_command_names_the_new_run(finished_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "st"
    done = runner.invoke(app, ["self-train", "-m", str(finished_run), "-o", str(out), "--device", "cpu"])
    assert done.exit_code == 0, done.output
    assert f"self-trained run {out / 'run'}" in done.output and (out / "run" / "DONE").is_file()


def test_self_train_command_refuses_a_run_folder_that_is_not_one(tmp_path: Path) -> None:
    refused = runner.invoke(app, ["self-train", "-m", str(tmp_path), "-o", str(tmp_path / "st")])
    assert refused.exit_code == 1
    assert f"{tmp_path}: not a run folder" in refused.output and not (tmp_path / "st").exists()


def test_self_train_command_passes_every_run_named(tmp_path: Path, monkeypatch) -> None:
    import lmisa.self_training

    seen = []
    monkeypatch.setattr(lmisa.self_training, "self_train",
                        lambda model, out, **kw: seen.append(list(model)) or Path(out) / "run")
    done = runner.invoke(app, ["self-train", "-m", "runs/a", "-m", "runs/b", "-o", str(tmp_path / "st")])
    assert done.exit_code == 0, done.output
    assert seen == [[Path("runs/a"), Path("runs/b")]]
