"""adaoutput: parameter counts as documented; the segmenter and the output-space discriminator train
(segmentation loss falls); a resumed run equals a straight one; lmisa.predict loads and runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import lmisa.peers.adaoutput as adaoutput
from lmisa.config import Config, apply_variant
from lmisa.io import read_image
from lmisa.nets import HybridNet, count_parameters
from lmisa.peers.adaoutput import AdaOutputTrainer
from lmisa.predict import load_run, predict_volume
from lmisa.training import train
from conftest import train_cut_after_first_epoch
from lmisa.training.checkpoint import load_checkpoint
from lmisa.training.variants import build_inference_net
from peer_helpers import LABELS, STEPS, TINY, domains, fixed_batch_and_recorder, one_thread  # noqa: F401, F811


def test_parameter_counts_are_the_documented_ones() -> None:
    cfg = apply_variant(Config(), "adaoutput")
    with torch.device("meta"):
        net = build_inference_net(cfg, 1, 5)
        disc = adaoutput.build_discriminator(cfg, 5)
    assert isinstance(net, HybridNet)
    assert count_parameters(net) == adaoutput.PARAMS_NET == adaoutput.PARAMS_INFERENCE == 774_592
    assert count_parameters(disc) == adaoutput.PARAMS_DISCRIMINATOR == 2_766_785
    assert count_parameters(net) + count_parameters(disc) == adaoutput.PARAMS_TRAINING == 3_541_377
    for n in (774_592, 2_766_785, 3_541_377):
        assert f"{n:,}" in adaoutput.__doc__
    with torch.device("meta"):
        assert disc(torch.zeros(2, 5, 256, 256)).shape == (2, 1, 8, 8)  # five stride-2 convs


def test_trains_resumes_and_predicts(domains, tmp_path: Path, monkeypatch) -> None:
    src, tgt = domains
    steps = fixed_batch_and_recorder(monkeypatch, AdaOutputTrainer)
    straight = train(src, tgt, out=tmp_path / "straight", variant="adaoutput", overrides=TINY, progress=False)

    assert len(steps) == 2 * STEPS
    first, last = steps[0][1], steps[-1][1]
    assert last["seg"] < 0.8 * first["seg"]
    assert all(np.isfinite([s["adv"], s["disc"]]).all() for _, s in steps)
    assert first["total"] == pytest.approx(first["seg"] + adaoutput.ADV_WEIGHT * first["adv"], rel=1e-5)

    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", variant="adaoutput", overrides=TINY)
    resumed = train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)

    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    for name, tensor in a["net"].items():
        torch.testing.assert_close(tensor, b["net"][name], rtol=0, atol=0, msg=f"net.{name}")
    for name, tensor in a["peer"]["modules"]["disc"].items():
        torch.testing.assert_close(tensor, b["peer"]["modules"]["disc"][name], rtol=0, atol=0, msg=f"disc.{name}")
    assert a["peer"]["schedulers"]["sched_disc"] == b["peer"]["schedulers"]["sched_disc"]
    assert [r["epoch"] for r in b["history"]] == [1, 2]

    model = load_run(straight)
    assert isinstance(model.net, HybridNet)
    params = json.loads((straight / "params.json").read_text())  # the tiny widths of TINY
    assert set(params["parts"]) == {"net", "disc"} and params["parts"]["net"] == count_parameters(model.net)
    assert params["training"] == sum(params["parts"].values())
    image = read_image(next((tgt / "imagesTr").glob("*.nii.gz")))
    labels = predict_volume(model, image)
    assert labels.shape == image.array.shape and labels.dtype == np.uint8 and labels.max() < 5


def test_peers_need_target_images(domains, tmp_path: Path) -> None:
    from lmisa.errors import LmisaError

    src, _ = domains
    cfg = {**TINY, "train": dict(TINY["train"], epochs=1, steps_per_epoch=1)}
    with pytest.raises(LmisaError, match="needs the target domain"):
        train(src, None, out=tmp_path / "no_target", variant="adaoutput", overrides=cfg, progress=False)
