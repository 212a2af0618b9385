"""``lmisa train`` on the command line: self-training from a trained run's predictions of the target."""

from pathlib import Path

import yaml
from typer.testing import CliRunner

from lmisa.cli import app
from lmisa.config import Config

runner = CliRunner()
LABELS = {"background": 0, "liver": 1}


def test_self_training_from_a_runs_predictions_of_the_target(nnunet_factory, tmp_path: Path, monkeypatch) -> None:
    """The README's flow: train, predict the target's training images, train again on those maps."""
    common = _tiny_train_args(nnunet_factory, tmp_path, monkeypatch)[1:]
    tgt = Path(common[common.index("--target") + 1])
    first = runner.invoke(app, ["train", *common, "--out", str(tmp_path / "run")])
    assert first.exit_code == 0, first.output
    maps = tmp_path / "pseudo"
    predicted = runner.invoke(app, ["predict", "-m", str(tmp_path / "run"), "-i", str(tgt / "imagesTr"), "-o", str(maps)])
    assert predicted.exit_code == 0, predicted.output
    assert sorted(p.name for p in maps.glob("*.nii.gz")) == ["case_000.nii.gz", "case_001.nii.gz"]

    second = runner.invoke(app, ["train", *common, "--out", str(tmp_path / "st"), "--pseudo-labels", str(maps)])
    assert second.exit_code == 0, second.output
    assert Config.load(tmp_path / "st" / "config.yaml").data.pseudo_labels == str(maps.resolve())
    assert "loss_pseudo" in (tmp_path / "st" / "log.csv").read_text()


def _tiny_train_args(nnunet_factory, tmp_path: Path, monkeypatch) -> list[str]:
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    src = nnunet_factory("src", n_cases=3, shape=(4, 20, 20), labels=LABELS, seed=0)
    tgt = nnunet_factory("tgt", n_cases=2, shape=(4, 20, 20), labels=LABELS, seed=1)
    config = tmp_path / "tiny.yaml"
    config.write_text("data: {size: [16, 16], spacing: [1.5, 1.5]}\ntrain: {batch_size: 2, val_batches: 1}\n")
    return ["train", "--source", str(src), "--target", str(tgt), "--variant", "source_only", "--config", str(config),
            "--epochs", "1", "--steps-per-epoch", "2", "--device", "cpu"]


def test_stopped_before_its_first_epoch_the_same_command_starts_again(nnunet_factory, tmp_path: Path, monkeypatch) -> None:
    from lmisa.training.trainer import Trainer

    args = _tiny_train_args(nnunet_factory, tmp_path, monkeypatch) + ["--out", str(tmp_path / "run")]

    def ctrl_c(self):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "fit", ctrl_c)
        stopped = runner.invoke(app, args)
    assert stopped.exit_code == 130
    assert "nothing to resume" in stopped.output and "--resume`" not in stopped.output
    assert (tmp_path / "run" / "config.yaml").exists()  # the stopped start left its folder
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").exists()


def test_a_start_refused_for_bad_data_leaves_no_folder_and_runs_once_fixed(nnunet_factory, tmp_path: Path, monkeypatch) -> None:
    args = _tiny_train_args(nnunet_factory, tmp_path, monkeypatch) + ["--out", str(tmp_path / "run")]
    label = Path(args[args.index("--source") + 1]) / "labelsTr" / "case_000.nii.gz"
    saved = label.read_bytes()
    label.write_bytes(saved[:40])  # truncated: refused before training
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "case_000" in refused.output
    assert not (tmp_path / "run").exists()  # refused before a run folder is made
    label.write_bytes(saved)
    fixed = runner.invoke(app, args)
    assert fixed.exit_code == 0, fixed.output


def test_print_config_shows_the_resolved_config_without_data(tmp_path: Path) -> None:
    printed = runner.invoke(app, ["train", "--print-config", "--variant", "source_only", "--epochs", "7"])
    assert printed.exit_code == 0, printed.output
    cfg = Config.from_dict(yaml.safe_load(printed.output))
    assert cfg.variant == "source_only" and cfg.train.epochs == 7
    paper = Path(__file__).parents[2] / "configs" / "paper.yaml"  # a config's own variant holds without --variant
    from_file = runner.invoke(app, ["train", "--print-config", "--config", str(paper)])
    assert Config.from_dict(yaml.safe_load(from_file.output)).variant == "lmisa_paper", from_file.output
    overridden = runner.invoke(app, ["train", "--print-config", "--config", str(paper), "--variant", "source_only"])
    assert Config.from_dict(yaml.safe_load(overridden.output)).variant == "source_only", overridden.output
    missing = runner.invoke(app, ["train", "--target", str(tmp_path)])
    assert missing.exit_code == 1 and "--source is required" in missing.output


def test_zero_epochs_are_refused(tmp_path: Path) -> None:
    refused = runner.invoke(app, ["train", "--source", str(tmp_path / "none"), "--epochs", "0", "--out",
                                  str(tmp_path / "run")])
    assert refused.exit_code == 1 and "train.epochs 0" in refused.output and not (tmp_path / "run").exists()


def test_dry_run_checks_the_inputs_and_writes_nothing(nnunet_factory, tmp_path: Path, monkeypatch) -> None:
    args = _tiny_train_args(nnunet_factory, tmp_path, monkeypatch) + ["--out", str(tmp_path / "run"), "--dry-run"]
    tgt = Path(args[args.index("--target") + 1])
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("ok: inputs checked for variant source_only (3 source cases, 2 target cases)")
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()

    maps = tmp_path / "maps"  # the target's own label copied as a map, and a case without a map: both named
    maps.mkdir()
    (maps / "case_000.nii.gz").write_bytes((tgt / "labelsTr" / "case_000.nii.gz").read_bytes())
    refused = runner.invoke(app, [*args, "--variant", "lmisa", "--pseudo-labels", str(maps)])
    assert refused.exit_code == 1
    assert f"{maps / 'case_000.nii.gz'}: is one of the target's own label maps" in refused.output
    assert f"{maps / 'case_001.nii.gz'}: no pseudo-label map" in refused.output
    assert not (tmp_path / "run").exists()

    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 1 and "--dry-run checks the inputs of a new run" in resumed.output
    (tmp_path / "run").mkdir()  # an --out a new run would refuse: the dry run refuses it too
    (tmp_path / "run" / "notes.txt").write_text("mine")
    taken = runner.invoke(app, args)
    assert taken.exit_code == 1 and "folder exists and is not empty" in taken.output
    both = runner.invoke(app, [*args, "--print-config"])
    assert both.exit_code == 1 and "choose one" in both.output
