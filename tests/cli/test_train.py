"""``lmisa train`` on the command line: self-training from a folder of pseudo-labels."""

import shutil
from pathlib import Path

from typer.testing import CliRunner

from lmisa.cli import app
from lmisa.config import Config

runner = CliRunner()
LABELS = {"background": 0, "liver": 1}


def test_pseudo_labels_option_trains_on_them_and_saves_the_folder(nnunet_factory, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    src = nnunet_factory("src", n_cases=3, shape=(4, 20, 20), labels=LABELS, seed=0)
    tgt = nnunet_factory("tgt", n_cases=2, shape=(4, 20, 20), labels=LABELS, seed=1)
    maps = tmp_path / "pseudo"
    shutil.move(tgt / "labelsTr", maps)  # stands in for `lmisa predict` on the target
    config = tmp_path / "tiny.yaml"
    config.write_text("data: {size: [16, 16], spacing: [1.5, 1.5]}\ntrain: {batch_size: 2, val_batches: 1}\n")
    args = ["train", "--source", str(src), "--target", str(tgt), "--variant", "source_only", "--config", str(config),
            "--epochs", "1", "--steps-per-epoch", "2", "--out", str(tmp_path / "run"), "--device", "cpu",
            "--pseudo-labels", str(maps)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert Config.load(tmp_path / "run" / "config.yaml").data.pseudo_labels == str(maps.resolve())
    assert "loss_pseudo" in (tmp_path / "run" / "log.csv").read_text()
