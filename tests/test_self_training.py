"""lmisa.self_training: one resumable round of self-training from a finished run, on tiny data sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import TINY_RUN
from lmisa.config import Config
from lmisa.errors import LmisaError
from lmisa.self_training import MAPS, RECORD, RUN, base_run_data, base_settings, self_train
from lmisa.training import resolve_config, train
from lmisa.training.trainer import Trainer


def test_self_train_trains_source_only_on_the_runs_maps_of_the_target(finished_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "st"
    run = self_train(finished_run, out, progress=False)
    assert run == out / RUN and (run / "DONE").is_file()
    assert sorted(p.name for p in (out / MAPS).iterdir()) == ["case_000.nii.gz", "case_001.nii.gz"]
    cfg = Config.load(run / "config.yaml")
    assert cfg.variant == "source_only" and cfg.data.pseudo_labels == str((out / MAPS).resolve())
    assert cfg.data.size == (16, 16) and cfg.train.epochs == 2  # the base run's config
    assert Config.load(finished_run / "config.yaml").loss.critic_window == 1.1 and cfg.loss.critic_window == 0.0
    assert all(float(r["loss_pseudo"]) > 0 for r in csv.DictReader((run / "log.csv").open()))
    assert json.loads((out / RECORD).read_text())["base_run"] == str(finished_run.resolve())


def test_another_variant_trains_as_it_would_on_the_base_runs_data_and_schedule(finished_run: Path) -> None:
    """The base (no_recon) switched its reconstruction off; an lmisa run from its settings has it back."""
    cfg = resolve_config(base_settings(finished_run), "lmisa")
    defaults = Config()
    assert (cfg.loss.w_recon, cfg.model.recon_from) == (defaults.loss.w_recon, defaults.model.recon_from)
    assert cfg.loss.w_adv == defaults.loss.w_adv and cfg.loss.critic_window == 1.1
    assert cfg.data.size == (16, 16) and cfg.train.epochs == 2 and cfg.train.batch_size == 2  # the base's


def test_self_train_continues_after_an_interruption(finished_run: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "st"
    original = Trainer.on_epoch_end

    def stop_after_first_epoch(self, val):
        original(self, val)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "on_epoch_end", stop_after_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            self_train(finished_run, out, progress=False)
    maps_written = {p: p.stat().st_mtime_ns for p in (out / MAPS).iterdir()}
    run = self_train(finished_run, out, progress=False)
    assert "resumed at epoch 1" in (run / "train.log").read_text()
    assert len(list(csv.DictReader((run / "log.csv").open()))) == 2
    assert {p: p.stat().st_mtime_ns for p in (out / MAPS).iterdir()} == maps_written  # kept, not made again
    assert self_train(finished_run, out, progress=False) == run  # finished: returned as is


def test_self_train_refuses_what_it_cannot_continue(finished_run: Path, tmp_path: Path) -> None:
    with pytest.raises(LmisaError, match="supervised"):
        self_train(finished_run, tmp_path / "sup", variant="supervised")
    assert not (tmp_path / "sup").exists()
    taken = tmp_path / "taken"
    (taken / "mine.txt").parent.mkdir()
    (taken / "mine.txt").write_text("the user's")
    with pytest.raises(LmisaError, match=f"{taken}: exists and is not an empty folder"):
        self_train(finished_run, taken)
    assert (taken / "mine.txt").read_text() == "the user's"
    other = tmp_path / "other"
    other.mkdir()
    (other / RECORD).write_text(json.dumps({"base_run": "/elsewhere", "variant": "source_only"}))
    with pytest.raises(LmisaError, match=f"{other / RECORD}: this folder self-trains source_only from /elsewhere"):
        self_train(finished_run, other)
    (other / RECORD).write_text(json.dumps({"base_run": str(finished_run.resolve()), "variant": "source_only"}))
    with pytest.raises(LmisaError, match="self-trains source_only from"):
        self_train(finished_run, other, variant="no_shape")
    (other / RECORD).write_text("{")
    with pytest.raises(LmisaError, match=f"{other / RECORD}: invalid JSON \\(line 1"):
        self_train(finished_run, other)
    assert sorted(p.name for p in other.iterdir()) == [RECORD]  # nothing made
    split = json.loads((finished_run / "split.json").read_text())
    (finished_run / "split.json").write_text(json.dumps(dict(split, target=None)))
    with pytest.raises(LmisaError, match="trained without a target"):
        self_train(finished_run, tmp_path / "st")
    (finished_run / "split.json").write_text(json.dumps({k: v for k, v in split.items() if k != "source"}))
    with pytest.raises(LmisaError, match=r'split\.json: "source" and "target" must be the paths'):
        self_train(finished_run, tmp_path / "st")
    (finished_run / "DONE").unlink()
    with pytest.raises(LmisaError, match="the run has not finished"):
        self_train(finished_run, tmp_path / "st")
    with pytest.raises(LmisaError, match="not a run folder"):
        self_train(tmp_path, tmp_path / "st")


def test_the_maps_are_made_where_the_new_run_trains(finished_run: Path, tmp_path: Path, monkeypatch) -> None:
    import lmisa.ensemble

    seen = []

    def record_device(run_dir, which="best", device="auto"):
        seen.append(device)
        raise KeyboardInterrupt  # stop before predicting or training

    monkeypatch.setattr(lmisa.ensemble, "load_run", record_device)
    for out, device in ((tmp_path / "a", None), (tmp_path / "b", "cuda:1")):
        with pytest.raises(KeyboardInterrupt):
            self_train(finished_run, out, device=device, progress=False)
    assert seen == ["cpu", "cuda:1"]  # the base run's train.device (TINY_RUN), else --device


def test_several_runs_label_the_target_together_and_the_first_gives_the_config(
    finished_run: Path, tmp_path: Path, monkeypatch
) -> None:
    import lmisa.ensemble

    source, target = base_run_data(finished_run)
    tiny_seed1 = dict(TINY_RUN, train=dict(TINY_RUN["train"], seed=1))
    second = train(source, target, out=tmp_path / "base_seed1", variant="no_recon", overrides=tiny_seed1,
                   progress=False)
    loaded = []
    original = lmisa.ensemble.load_ensemble

    def record_members(runs, which="best", device="auto"):
        loaded.append([Path(r) for r in runs])
        return original(runs, which=which, device=device)

    monkeypatch.setattr(lmisa.ensemble, "load_ensemble", record_members)
    out = tmp_path / "ens_st"
    run = self_train([finished_run, second], out, progress=False)
    assert loaded == [[finished_run, second]] and (run / "DONE").is_file()
    assert len(list((out / MAPS).iterdir())) == 2
    assert Config.load(run / "config.yaml").train.seed == Config.load(finished_run / "config.yaml").train.seed == 0
    record = json.loads((out / RECORD).read_text())
    assert record["ensemble"] == [str(finished_run.resolve()), str(second.resolve())]
    made_from = f"from {finished_run.resolve()}, {second.resolve()} \\(the first run gives the config\\)"
    with pytest.raises(LmisaError, match=f"{out / RECORD}: this folder self-trains source_only {made_from}"):
        self_train(finished_run, out)  # one of the runs alone: other maps
    with pytest.raises(LmisaError, match=f"{out / RECORD}: this folder self-trains"):
        self_train([second, finished_run], out)  # another first run: another config


def test_runs_of_another_target_or_none_are_refused(finished_run: Path, tmp_path: Path, nnunet_factory) -> None:
    from conftest import TWO_ORGANS

    source, _ = base_run_data(finished_run)
    other_target = nnunet_factory("tgt2", n_cases=2, shape=(4, 20, 20), labels=TWO_ORGANS, seed=2)
    other = train(source, other_target, out=tmp_path / "other", variant="source_only", overrides=TINY_RUN,
                  progress=False)
    with pytest.raises(LmisaError, match=f"{other}: trained on .* must share one source and one target"):
        self_train([finished_run, other], tmp_path / "st")
    with pytest.raises(LmisaError, match="given twice"):
        self_train([finished_run, finished_run], tmp_path / "st2")
    with pytest.raises(LmisaError, match="no base run given"):
        self_train([], tmp_path / "st3")
    target = base_run_data(finished_run)[1]
    finer = train(source, target, out=tmp_path / "finer", variant="no_recon", progress=False,
                  overrides=dict(TINY_RUN, data=dict(TINY_RUN["data"], size=[24, 24])))
    with pytest.raises(LmisaError, match=f"{finer}.*prepares images unlike"):
        self_train([finished_run, finer], tmp_path / "st4")
    assert not any((tmp_path / name).exists() for name in ("st", "st2", "st3", "st4"))  # refused before OUT is made


def test_a_folder_made_before_ensembles_continues(finished_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "st"
    out.mkdir()
    (out / RECORD).write_text(json.dumps({"base_run": str(finished_run.resolve()), "variant": "source_only",
                                          "maps": MAPS, "run": RUN}))  # as written before several runs were allowed
    assert (self_train(finished_run, out, progress=False) / "DONE").is_file()
