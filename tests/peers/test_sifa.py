"""sifa: parameter counts as documented (training and inference); all networks train (segmentation and
cycle losses fall); a resumed run equals a straight one; lmisa.predict loads E + C and runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import lmisa.peers.sifa as sifa
from lmisa.config import Config, apply_variant
from lmisa.io import read_image
from lmisa.nets import count_parameters
from lmisa.peers.sifa import SIFASegmenter, SIFATrainer
from lmisa.predict import load_run, predict_volume
from lmisa.training import train
from conftest import train_cut_after_first_epoch
from lmisa.training.checkpoint import load_checkpoint
from lmisa.training.variants import build_inference_net
from peer_helpers import LABELS, STEPS, TINY, domains, fixed_batch_and_recorder, one_thread  # noqa: F401, F811


def test_parameter_counts_are_the_documented_ones() -> None:
    cfg = apply_variant(Config(), "sifa")
    with torch.device("meta"):
        modules = sifa.build_sifa(cfg, 1, 5)
        net = build_inference_net(cfg, 1, 5)  # what lmisa.predict builds
        assert modules["net"](torch.zeros(2, 1, 256, 256)).shape == (2, 5, 256, 256)
    assert isinstance(net, SIFASegmenter)
    table = sifa.parameter_table(modules)
    assert table == sifa.PARAMS
    assert count_parameters(net) == count_parameters(modules["net"]) == sifa.PARAMS_INFERENCE == 27_522_032
    assert sum(count_parameters(m) for m in modules.values()) == sifa.PARAMS_TRAINING == 43_347_441
    for n in list(sifa.PARAMS.values()) + [sifa.PARAMS_INFERENCE, sifa.PARAMS_TRAINING]:
        assert f"{n:,}" in sifa.__doc__, n
    for name in ("d_t", "d_s", "d_p", "d_p_ll"):  # PatchGANs of the published scale
        assert 2_700_000 < table[name] < 2_800_000


def test_trains_resumes_and_predicts(domains, tmp_path: Path, monkeypatch) -> None:
    src, tgt = domains
    steps = fixed_batch_and_recorder(monkeypatch, SIFATrainer)
    straight = train(src, tgt, out=tmp_path / "straight", variant="sifa", overrides=TINY, progress=False)

    assert len(steps) == 2 * STEPS
    first, last = steps[0][1], steps[-1][1]
    assert last["seg"] < 0.9 * first["seg"]
    assert last["cycle"] < first["cycle"]
    assert all(np.isfinite(list(s.values())).all() for _, s in steps)

    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", variant="sifa", overrides=TINY)
    resumed = train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)

    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    assert set(a["peer"]["modules"]) == {"classifier_ll", "g_t", "decoder", "d_t", "d_s", "d_p", "d_p_ll"}
    for name, tensor in a["net"].items():  # includes the batch-norm running statistics
        torch.testing.assert_close(tensor, b["net"][name], rtol=0, atol=0, msg=f"net.{name}")
    for module, sd in a["peer"]["modules"].items():
        for name, tensor in sd.items():
            where = f"{module}.{name}"
            torch.testing.assert_close(tensor, b["peer"]["modules"][module][name], rtol=0, atol=0, msg=where)
    assert [r["epoch"] for r in b["history"]] == [1, 2]

    model = load_run(straight)
    assert isinstance(model.net, SIFASegmenter)
    image = read_image(next((tgt / "imagesTr").glob("*.nii.gz")))
    labels = predict_volume(model, image)
    assert labels.shape == image.array.shape and labels.dtype == np.uint8 and labels.max() < 5
