"""cyclegan_seg: parameter counts as documented; both stages train (losses fall); resume in stage 2
equals a straight run and never retrains stage 1; lmisa.predict loads and runs its segmenter."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import lmisa.peers.cyclegan as cyclegan
from lmisa.config import Config, apply_variant
from lmisa.errors import LmisaError
from lmisa.io import read_image
from lmisa.nets import HybridNet, count_parameters
from lmisa.peers.cyclegan import CycleGANSegTrainer
from lmisa.predict import load_run, predict_volume
from lmisa.training import train
from conftest import train_cut_after_first_epoch
from lmisa.training.checkpoint import load_checkpoint
from lmisa.training.variants import build_inference_net
from peer_helpers import LABELS, STEPS, TINY, domains, fixed_batch_and_recorder, one_thread  # noqa: F401, F811


def test_parameter_counts_are_the_documented_ones() -> None:
    cfg = apply_variant(Config(), "cyclegan_seg")
    with torch.device("meta"):
        net = build_inference_net(cfg, 1, 5)
        parts = cyclegan.build_translators(cfg, 1)
    assert isinstance(net, HybridNet)
    counts = {k: count_parameters(m) for k, m in parts.items()}
    assert count_parameters(net) == cyclegan.PARAMS_NET == cyclegan.PARAMS_INFERENCE == 774_592
    assert counts["g_s2t"] == counts["g_t2s"] == cyclegan.PARAMS_TRANSLATOR == 2_844_289
    assert counts["d_t"] == counts["d_s"] == cyclegan.PARAMS_DISCRIMINATOR == 2_762_689
    assert count_parameters(net) + sum(counts.values()) == cyclegan.PARAMS_TRAINING == 11_988_548
    for n in (774_592, 2_844_289, 2_762_689, 11_988_548):
        assert f"{n:,}" in cyclegan.__doc__


def test_stage_split() -> None:
    cfg = apply_variant(Config(), "cyclegan_seg")
    cfg.train.epochs = 40
    assert cyclegan.stage1_epochs(cfg) == 20
    cfg.peer.stage_split = 0.25
    assert cyclegan.stage1_epochs(cfg) == 10
    cfg.peer.stage_split = 1.0
    assert cyclegan.stage1_epochs(cfg) == 40
    cfg.peer.stage_split = 1.5
    with pytest.raises(LmisaError, match="stage_split"):
        cyclegan.stage1_epochs(cfg)


def test_two_stages_train_resume_and_predict(domains, tmp_path: Path, monkeypatch) -> None:
    src, tgt = domains
    steps = fixed_batch_and_recorder(monkeypatch, CycleGANSegTrainer)
    straight = train(src, tgt, out=tmp_path / "straight", variant="cyclegan_seg", overrides=TINY, progress=False)

    # stage 1 (epoch 0): CycleGAN only; stage 2 (epoch 1): the segmenter only; each loss falls
    stage1 = [s for e, s in steps if e == 0]
    stage2 = [s for e, s in steps if e == 1]
    assert len(stage1) == len(stage2) == STEPS
    assert all(math.isnan(s["seg"]) and not math.isnan(s["cycle"]) for s in stage1)
    assert all(not math.isnan(s["seg"]) and math.isnan(s["cycle"]) for s in stage2)
    assert stage1[-1]["cycle"] < stage1[0]["cycle"]
    assert stage2[-1]["seg"] < 0.9 * stage2[0]["seg"]
    rows = list(csv.DictReader((straight / "log.csv").open()))
    assert rows[0]["val_loss"] == "nan" and float(rows[1]["val_loss"]) > 0  # stage 1 is never "best"
    assert load_checkpoint(straight / "checkpoints" / "best.pt")["epoch"] == 2

    # cut after stage 1, resume: stage 2 only, and the weights of a straight run
    cut = train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", variant="cyclegan_seg", overrides=TINY)

    translator_steps = []
    step = CycleGANSegTrainer.translator_step
    def counted(self, b):
        translator_steps.append(1)
        return step(self, b)

    monkeypatch.setattr(CycleGANSegTrainer, "translator_step", counted)
    resumed = train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)
    assert translator_steps == []  # stage 1 is not trained again

    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    for name, tensor in a["net"].items():
        torch.testing.assert_close(tensor, b["net"][name], rtol=0, atol=0, msg=f"net.{name}")
    for module, sd in a["peer"]["modules"].items():
        for name, tensor in sd.items():
            where = f"{module}.{name}"
            torch.testing.assert_close(tensor, b["peer"]["modules"][module][name], rtol=0, atol=0, msg=where)
            # frozen in stage 2: the translator and discriminators are those of the end of stage 1
            torch.testing.assert_close(tensor, cut["peer"]["modules"][module][name], rtol=0, atol=0, msg=where)
    assert [r["epoch"] for r in b["history"]] == [1, 2]

    # prediction loads the segmenter and segments a target volume as it is
    model = load_run(straight)
    assert isinstance(model.net, HybridNet)
    image = read_image(next((tgt / "imagesTr").glob("*.nii.gz")))
    labels = predict_volume(model, image)
    assert labels.shape == image.array.shape and labels.dtype == np.uint8 and labels.max() < 5
