"""End-to-end training on tiny data: run folder, losses, resume equivalence, no target labels read."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from lmisa.config import DEFAULT_EMA_DECAY, Config
from lmisa.errors import LmisaError
from lmisa.losses import generator_adversarial_loss
from lmisa.real_prior import OrganShare
from lmisa.training import train
from conftest import forbid_label_reads_under, set_cpu_bf16, train_cut_after_first_epoch
from lmisa.training.checkpoint import load_checkpoint, save_checkpoint
from lmisa.training.trainer import Trainer

LABELS = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
TINY = {
    "data": {"size": [32, 32], "spacing": [1.5, 1.5]},
    "train": {"batch_size": 4, "val_batches": 1, "epochs": 3, "steps_per_epoch": 3, "log_every": 1},
}
TINY_3D = {  # 3D patches of the domains below; "train" is set by each test
    "data": {"size": [32, 32], "spacing": [1.5, 1.5], "patch": [8, 16, 16], "spacing_z": 3.0},
    "loss": {"real_prior": "target"},  # patches are centred on slices: the prior applies to them too
}


@pytest.fixture
def domains(tmp_path: Path, nnunet_factory, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    src = nnunet_factory("src", n_cases=3, shape=(5, 24, 24), labels=LABELS, seed=0)
    tgt = nnunet_factory("tgt", n_cases=2, shape=(4, 20, 20), spacing=(5.0, 1.8, 1.8), labels=LABELS, seed=1)
    return src, tgt


@pytest.fixture
def seen(monkeypatch) -> dict[str, Trainer]:
    """{"trainer": the Trainer of the latest ``train`` call}, kept when its ``fit`` starts."""
    seen: dict[str, Trainer] = {}
    original = Trainer.fit

    def keep(self):
        seen["trainer"] = self
        return original(self)

    monkeypatch.setattr(Trainer, "fit", keep)
    return seen


def test_run_folder_has_everything(domains, tmp_path: Path) -> None:
    src, tgt = domains
    run = train(src, tgt, out=tmp_path / "run", overrides=TINY, progress=False)
    for name in ("config.yaml", "plans.json", "split.json", "log.csv", "progress.png", "train.log", "DONE",
                 "hardware.txt", "params.json"):
        assert (run / name).exists(), name
    params = json.loads((run / "params.json").read_text())
    assert set(params["parts"]) == {"net", "critic"} and params["training"] == sum(params["parts"].values())
    assert (run / "checkpoints" / "latest.pt").exists() and (run / "checkpoints" / "best.pt").exists()
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert {"loss_seg", "loss_recon", "loss_adv", "loss_critic", "val_loss", "val_dice"} <= set(rows[0])
    state = load_checkpoint(run / "checkpoints" / "latest.pt")  # weights_only=True
    assert state["epoch"] == 3 and "critic" in state


def test_never_overwrites_another_run(domains, tmp_path: Path) -> None:
    src, tgt = domains
    run = train(src, tgt, out=tmp_path / "run", overrides=TINY, progress=False)
    with pytest.raises(LmisaError, match="not empty"):
        train(src, tgt, out=run, overrides=TINY, progress=False)


def test_losses_go_down(domains, tmp_path: Path) -> None:
    src, tgt = domains
    cfg = {"data": TINY["data"], "train": dict(TINY["train"], epochs=4, steps_per_epoch=8)}
    cfg["augment"] = {"enabled": False}
    run = train(src, tgt, out=tmp_path / "run", overrides=cfg, progress=False, variant="lmisa")
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert float(rows[-1]["loss_seg"]) < float(rows[0]["loss_seg"])
    assert float(rows[-1]["loss_recon"]) < float(rows[0]["loss_recon"])


@pytest.mark.parametrize("amx, avx512_bf16, amp", [(True, False, True), (False, True, True), (True, True, False),
                                                   (False, False, True)])
def test_lmisa_trains_in_bf16_on_a_cpu_with_bf16_instructions_unless_told_not_to(
        domains, tmp_path: Path, monkeypatch, seen, amx: bool, avx512_bf16: bool, amp: bool) -> None:
    set_cpu_bf16(monkeypatch, amx=amx, avx512_bf16=avx512_bf16)
    native = amx or avx512_bf16
    src, tgt = domains
    loss = {"adv_warmup": 0.0, "adv_ramp": 0.0}  # the critic and its gradient penalty at full weight from step 1
    run = train(src, tgt, out=tmp_path / "run", progress=False, variant="lmisa",
                overrides={"data": TINY["data"], "train": dict(TINY["train"], amp=amp), "loss": loss})
    assert seen["trainer"].use_amp is (native and amp)
    precision = "bf16 autocast" if native and amp else "float32"
    assert (run / "hardware.txt").read_text().strip().endswith(precision)
    assert f"on cpu ({precision})" in (run / "train.log").read_text()
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert all(torch.isfinite(torch.tensor(float(r[k]))) for r in rows for k in ("loss_total", "loss_critic"))


@pytest.mark.parametrize("record", [True, False])
def test_a_run_resumes_in_the_precision_it_started_in(domains, tmp_path: Path, monkeypatch, seen, record) -> None:
    """Started in float32 (no AMX, or a checkpoint from before the precision was recorded): a resume on a CPU
    with AMX stays float32, and says so."""
    src, tgt = domains
    set_cpu_bf16(monkeypatch, amx=False)
    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", overrides=TINY)
    latest = tmp_path / "cut" / "checkpoints" / "latest.pt"
    state = load_checkpoint(latest)
    assert state["bf16"] is False
    if not record:
        del state["bf16"]
        save_checkpoint(state, latest)
    set_cpu_bf16(monkeypatch, amx=True)
    run = train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)
    assert seen["trainer"].use_amp is False
    assert "resuming in float32, the precision the run started in" in (run / "train.log").read_text()
    assert (run / "hardware.txt").read_text().strip().endswith("float32")


def test_a_3d_run_started_in_bf16_resumes_in_float32_on_avx512_bf16_alone(domains, tmp_path: Path, monkeypatch,
                                                                          seen) -> None:
    """A 3D run that trained in bf16 elsewhere (its checkpoint says so) goes on in float32 on a CPU with AVX512-BF16
    alone, and the log says why. The run here trains in float32; only its checkpoint's record is set to bf16."""
    src, tgt = domains
    set_cpu_bf16(monkeypatch, amx=False, avx512_bf16=True)
    cfg = {**TINY_3D, "train": {"batch_size": 2, "val_batches": 1, "epochs": 2, "steps_per_epoch": 1}}
    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", dims=3, overrides=cfg)
    latest = tmp_path / "cut" / "checkpoints" / "latest.pt"
    state = load_checkpoint(latest)
    state["bf16"] = True
    save_checkpoint(state, latest)
    train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)
    assert seen["trainer"].use_amp is False
    assert ("resuming in float32, the precision the run started in being bf16, which this device does not compute "
            "natively for a 3D network") in (tmp_path / "cut" / "train.log").read_text()


def test_resume_equals_straight_run(domains, tmp_path: Path, monkeypatch) -> None:
    src, tgt = domains
    straight = train(src, tgt, out=tmp_path / "straight", overrides=TINY, progress=False)

    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", overrides=TINY)
    resumed = train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)

    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    for key in ("net", "critic", "ema"):  # the weight average is on by default
        for name, tensor in a[key].items():
            torch.testing.assert_close(tensor, b[key][name], rtol=0, atol=0, msg=f"{key}.{name}")
    assert [r["epoch"] for r in b["history"]] == [1, 2, 3]
    assert Config.load(straight / "config.yaml").train.ema_decay == DEFAULT_EMA_DECAY  # the saved config says what ran


def test_a_run_saved_before_the_weight_average_resumes_without_one(domains, tmp_path: Path, monkeypatch) -> None:
    src, tgt = domains
    cut = tmp_path / "cut"
    train_cut_after_first_epoch(monkeypatch, src, tgt, cut, overrides={**TINY, "train": dict(TINY["train"], ema_decay=0.0)})
    saved = Config.load(cut / "config.yaml")
    saved.train.ema_decay = None  # as an older lmisa wrote it: no such key
    saved.save(cut / "config.yaml")
    resumed = train(src, tgt, out=cut, resume=True, progress=False)
    assert "ema" not in load_checkpoint(resumed / "checkpoints" / "latest.pt")


def test_a_resume_names_a_damaged_split_file(domains, tmp_path: Path, monkeypatch) -> None:
    src, tgt = domains
    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", overrides=TINY)
    (tmp_path / "cut" / "split.json").write_text('["source_train"]')
    with pytest.raises(LmisaError, match=r"split\.json: expected a JSON object, got list"):
        train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)


@pytest.mark.parametrize("variant", ["lmisa", "no_mlngm", "no_recon", "no_shape", "source_only"])
def test_uda_variants_never_read_a_target_label(domains, tmp_path: Path, monkeypatch, variant: str) -> None:
    src, tgt = domains
    shutil.rmtree(tgt / "labelsTr")  # nothing to read: a target label read would fail loudly
    forbid_label_reads_under(tgt, monkeypatch)
    cfg = {"data": TINY["data"], "train": dict(TINY["train"], epochs=1, steps_per_epoch=2)}
    run = train(src, tgt, out=tmp_path / variant, variant=variant, overrides=cfg, progress=False)
    assert (run / "DONE").exists()


def test_supervised_reads_target_labels_and_says_so(domains, tmp_path: Path) -> None:
    src, tgt = domains
    cfg = {"data": TINY["data"], "train": dict(TINY["train"], epochs=1, steps_per_epoch=2)}
    run = train(src, tgt, out=tmp_path / "sup", variant="supervised", overrides=cfg, progress=False)
    assert "reads the TARGET labels" in (run / "train.log").read_text()


def test_3d_patches_train(domains, tmp_path: Path, monkeypatch, seen) -> None:
    """On a CPU with AVX512-BF16 alone, 3D trains in float32 (lmisa.precision.bf16_native)."""
    set_cpu_bf16(monkeypatch, amx=False, avx512_bf16=True)
    src, tgt = domains
    cfg = {**TINY_3D, "train": {"batch_size": 2, "val_batches": 1, "epochs": 1, "steps_per_epoch": 2}}
    run = train(src, tgt, out=tmp_path / "run3d", dims=3, overrides=cfg, progress=False)
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert state["net"]["stem.weight"].ndim == 5  # 3D convolutions
    assert 0.0 < state["real_fraction"] <= 1.0
    assert '"dims": 3' in (run / "plans.json").read_text()
    assert seen["trainer"].use_amp is False


def test_3d_patch_must_fit_the_network(domains, tmp_path: Path) -> None:
    src, tgt = domains
    with pytest.raises(LmisaError, match="multiple of 8"):
        train(src, tgt, out=tmp_path / "bad", dims=3, overrides={"data": {"patch": [6, 16, 16]}}, progress=False)


def test_adversarial_weight_warms_up_then_ramps() -> None:
    from types import SimpleNamespace

    from lmisa.config import Config

    cfg = Config()
    cfg.train.epochs, cfg.train.steps_per_epoch = 10, 10  # 100 steps
    cfg.loss.w_adv, cfg.loss.adv_warmup, cfg.loss.adv_ramp = 0.5, 0.2, 0.4
    weight = lambda step: Trainer.adversarial_weight(SimpleNamespace(cfg=cfg, global_step=step))  # noqa: E731
    assert weight(0) == 0.0 and weight(19) == 0.0
    assert weight(40) == pytest.approx(0.25)
    assert weight(60) == pytest.approx(0.5) and weight(99) == 0.5


def test_divergence_is_an_infinite_term_or_a_nan_total() -> None:
    nan, inf = float("nan"), float("inf")
    assert Trainer._diverged({"seg": 0.5, "total": 20.0}) == []
    assert Trainer._diverged({"seg": nan, "total": nan}) == ["total"]
    assert Trainer._diverged({"seg": inf, "total": 1.0}) == ["seg"]
    assert Trainer._diverged({"seg": nan, "cycle": 0.3}) == []  # a peer's stage logs NaN for terms it skips
    assert Trainer._diverged({"seg": nan, "cycle": nan}) == ["seg", "cycle"]


def test_weight_average_is_validated_saved_resumed_and_predicted_with(domains, tmp_path: Path, monkeypatch) -> None:
    from lmisa.predict import load_run

    src, tgt = domains
    cfg = {"data": TINY["data"], "train": dict(TINY["train"], ema_decay=0.9)}
    straight = train(src, tgt, out=tmp_path / "straight", overrides=cfg, progress=False)
    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", overrides=cfg)
    resumed = train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    for name, tensor in a["ema"].items():  # the average resumes where it stopped
        torch.testing.assert_close(tensor, b["ema"][name], rtol=0, atol=0, msg=name)
    name = next(iter(a["net"]))
    assert not torch.equal(a["ema"][name], a["net"][name])  # an average, not a copy
    best = load_checkpoint(straight / "checkpoints" / "best.pt")
    model = load_run(straight)
    torch.testing.assert_close(model.net.state_dict()[name], best["ema"][name])  # prediction uses the average


def test_weight_average_moves_towards_the_weights_by_one_minus_decay() -> None:
    net = torch.nn.Linear(2, 1)
    trainer = Trainer.__new__(Trainer)  # only what update_ema reads
    trainer.net, trainer.cfg = net, type("C", (), {"weight_average_decay": 0.75})()
    trainer.ema = torch.nn.Linear(2, 1)
    before = trainer.ema.weight.detach().clone()
    trainer.update_ema()
    torch.testing.assert_close(trainer.ema.weight, 0.75 * before + 0.25 * net.weight.detach())


def test_weight_average_is_refused_for_a_peer(domains, tmp_path: Path) -> None:
    src, tgt = domains
    cfg = {"data": TINY["data"], "train": dict(TINY["train"], ema_decay=0.9)}
    with pytest.raises(LmisaError, match="ema_decay"):
        train(src, tgt, out=tmp_path / "run", overrides=cfg, progress=False, variant="adaoutput")


def test_weight_average_decay_out_of_range_is_one_clear_error(domains, tmp_path: Path) -> None:
    src, tgt = domains
    cfg = {"data": TINY["data"], "train": dict(TINY["train"], ema_decay=1.0)}
    with pytest.raises(LmisaError, match=r"ema_decay must be in \[0, 1\)"):
        train(src, tgt, out=tmp_path / "run", overrides=cfg, progress=False)


def test_target_real_prior_is_applied_logged_saved_and_resumed(domains, tmp_path: Path, monkeypatch) -> None:
    src, tgt = domains
    cfg = {"data": TINY["data"], "train": TINY["train"], "loss": {"real_prior": "target"}}
    straight = train(src, tgt, out=tmp_path / "straight", overrides=cfg, progress=False)
    assert "critic real maps:" in (straight / "train.log").read_text()
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    assert 0.0 < a["real_fraction"] <= 1.0
    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", overrides=cfg)
    # a resumed run goes on with the share it started with, even if the data now say otherwise
    import lmisa.training.data as data_module
    monkeypatch.setattr(data_module, "estimate_organ_share", lambda *args: OrganShare(0.123, 0.0, 1.0))
    resumed = train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    assert b["real_fraction"] == a["real_fraction"] != 0.123
    for key in ("net", "critic"):
        for name, tensor in a[key].items():
            torch.testing.assert_close(tensor, b[key][name], rtol=0, atol=0, msg=f"{key}.{name}")


def test_target_real_prior_needs_uniform_real_maps(domains, tmp_path: Path) -> None:
    src, tgt = domains
    cfg = {"data": TINY["data"], "train": TINY["train"], "loss": {"real_prior": "target", "real_uniform": False}}
    with pytest.raises(LmisaError, match="real_prior: target needs loss.real_uniform"):
        train(src, tgt, out=tmp_path / "run", overrides=cfg, progress=False)
    # a variant without a critic ignores the option
    train(src, tgt, out=tmp_path / "so", overrides=cfg, progress=False, variant="source_only")


@pytest.fixture
def critic_fake_weights(monkeypatch) -> list[torch.Tensor | None]:
    """The ``fake_weight`` of every critic update of the training runs in the test, in order."""
    import lmisa.training.trainer as trainer_module

    weights: list[torch.Tensor | None] = []
    real_critic_loss = trainer_module.critic_loss

    def spy(critic, real, fake, **kwargs):
        weights.append(kwargs["fake_weight"])
        return real_critic_loss(critic, real, fake, **kwargs)

    monkeypatch.setattr(trainer_module, "critic_loss", spy)
    return weights


def test_critic_can_judge_organ_maps_only(domains, tmp_path: Path, critic_fake_weights) -> None:
    weights = critic_fake_weights
    src, tgt = domains
    loss = {"critic_maps": "organs", "adv_warmup": 0.0, "adv_ramp": 0.0}
    run = train(src, tgt, out=tmp_path / "run", overrides={"data": TINY["data"], "train": TINY["train"], "loss": loss},
                progress=False)
    assert "critic maps: organs only" in (run / "train.log").read_text()
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["real_fraction"] == 1.0
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert all(0.0 <= float(r["loss_critic_fake_share"]) <= 1.0 for r in rows)
    assert all(w is not None and set(w.unique().tolist()) <= {0.0, 1.0} for w in weights)
    # the gate: a prediction holds an organ from min_organ_pixels argmax pixels on (32 x 32 frame: 1)
    trainer = Trainer.__new__(Trainer)
    trainer.cfg, trainer.organ_pixels = Config.from_dict({"loss": loss}), 1
    seg = torch.zeros(3, 5, 32, 32)
    seg[:, 0] = 1.0  # background everywhere
    seg[1, 2, 4, 4] = 2.0  # one right-kidney pixel
    torch.testing.assert_close(trainer.critic_fake_weight(seg), torch.tensor([0.0, 1.0, 0.0]))
    patches = torch.stack([seg, seg, seg], dim=2)  # (N, C, D, H, W): judged on the centre slice
    patches[0, 3, 1, 5, 5] = 2.0
    patches[2, 3, 0, 5, 5] = 2.0
    torch.testing.assert_close(trainer.critic_fake_weight(patches), torch.tensor([1.0, 1.0, 0.0]))
    trainer.cfg = Config()
    assert trainer.critic_fake_weight(seg) is None  # the default judges every map


def test_critic_organ_size_is_a_quantile_of_the_source_organ_slices(domains, tmp_path: Path, monkeypatch,
                                                                   critic_fake_weights) -> None:
    weights = critic_fake_weights
    src, tgt = domains
    loss = {"critic_maps": "organs", "critic_organ_quantile": 0.5, "adv_warmup": 0.0, "adv_ramp": 0.0}
    cfg = {"data": TINY["data"], "train": TINY["train"], "loss": loss}
    run = train(src, tgt, out=tmp_path / "run", overrides=cfg, progress=False)
    line = next(x for x in (run / "train.log").read_text().splitlines() if "critic maps: organs only" in x)
    assert "the 0.5 quantile of the source organ slices" in line
    pixels = int(line.split("from ")[1].split(" organ pixels")[0])
    assert pixels > 1  # above 0.1 % of the 32 x 32 frame
    assert weights and all(set(w.unique().tolist()) <= {0.0, 1.0} for w in weights)
    # resuming keeps the same size: it is recomputed from the same source slices
    train_cut = tmp_path / "cut"
    train_cut_after_first_epoch(monkeypatch, src, tgt, train_cut, overrides=cfg)
    resumed = train(src, tgt, out=train_cut, resume=True, progress=False)
    lines = [x for x in (resumed / "train.log").read_text().splitlines() if "critic maps: organs only" in x]
    assert len(lines) == 2 and f"from {pixels} organ pixels" in lines[1]  # the cut session's line, then the resumed one


def test_critic_real_maps_are_drawn_above_the_organ_size(domains, tmp_path: Path, seen) -> None:
    from lmisa.sampling import min_organ_pixels

    src, tgt = domains
    cfg = {"data": TINY["data"], "train": {**TINY["train"], "epochs": 1, "steps_per_epoch": 1}}
    for q in (0.0, 0.5):
        loss = {"critic_maps": "organs", "critic_organ_quantile": q}
        train(src, tgt, out=tmp_path / f"q{q}", overrides={**cfg, "loss": loss}, progress=False)
        trainer = seen["trainer"]
        if q == 0:
            assert trainer.organ_pixels == min_organ_pixels((32, 32))
        fg, _, fraction = trainer.real_sampler.organ_split
        counts = (trainer.real_sampler.slices.labels[fg] > 0).flatten(1).sum(1)
        assert fraction == 1.0 and int(counts.min()) >= trainer.organ_pixels


@pytest.mark.parametrize("loss, message", [
    ({"critic_maps": "all", "critic_organ_quantile": 0.25}, "critic_organ_quantile sets the organ size"),
    ({"critic_maps": "organs", "critic_organ_quantile": 1.0}, r"critic_organ_quantile must be in \[0, 1\)"),
    ({"critic_maps": "organs", "critic_organ_quantile": 0.25, "dims": 3}, "critic_organ_quantile is 2D only"),
])
def test_critic_organ_quantile_is_checked(domains, tmp_path: Path, loss, message) -> None:
    src, tgt = domains
    dims = loss.pop("dims", 2)
    data = {**TINY["data"], "patch": [8, 32, 32]} if dims == 3 else TINY["data"]
    with pytest.raises(LmisaError, match=message):
        train(src, tgt, out=tmp_path / "run", progress=False,
              overrides={"data": data, "train": {**TINY["train"], "dims": dims}, "loss": loss})


def test_organ_maps_only_need_uniform_real_maps(domains, tmp_path: Path) -> None:
    src, tgt = domains
    cfg = {"data": TINY["data"], "train": TINY["train"], "loss": {"critic_maps": "organs", "real_uniform": False}}
    with pytest.raises(LmisaError, match="critic_maps: organs needs loss.real_uniform"):
        train(src, tgt, out=tmp_path / "run", overrides=cfg, progress=False)


@pytest.mark.parametrize("uniform", [True, False])
def test_critic_can_judge_source_predictions_instead_of_labels(domains, tmp_path: Path, monkeypatch, uniform) -> None:
    import lmisa.training.trainer as trainer_module

    seen: list[torch.Tensor] = []
    real_critic_loss = trainer_module.critic_loss

    def spy(critic, real, fake, **kwargs):
        seen.append(real.detach())
        return real_critic_loss(critic, real, fake, **kwargs)

    monkeypatch.setattr(trainer_module, "critic_loss", spy)
    src, tgt = domains
    loss = {"critic_real": "predictions", "real_uniform": uniform, "adv_warmup": 0.0, "adv_ramp": 0.0}
    cfg = {"data": TINY["data"], "train": TINY["train"], "loss": loss}
    run = train(src, tgt, out=tmp_path / "run", overrides=cfg, progress=False)
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert all(torch.isfinite(torch.tensor(float(r["loss_critic"]))) for r in rows)
    # soft maps (a softmax without the background channel), not one-hot labels
    real = torch.cat([r.flatten() for r in seen])
    assert ((real > 0.01) & (real < 0.99)).float().mean() > 0.5
    assert real.min() >= 0 and real.max() <= 1


def test_label_smoothing_with_predicted_real_maps_is_one_clear_error(domains, tmp_path: Path) -> None:
    src, tgt = domains
    loss = {"critic_real": "predictions", "real_label_smoothing": 0.1}
    with pytest.raises(LmisaError, match="real_label_smoothing smooths label maps"):
        train(src, tgt, out=tmp_path / "run", overrides={"data": TINY["data"], "train": TINY["train"], "loss": loss},
              progress=False)


def test_critic_window_draws_the_target_batch_around_the_predicted_organs(domains, tmp_path: Path, monkeypatch,
                                                                         seen) -> None:
    src, tgt = domains
    loss = {"critic_window": 1.0, "adv_warmup": 0.5, "adv_ramp": 0.0}
    cfg = {"data": TINY["data"], "train": {**TINY["train"], "epochs": 4, "steps_per_epoch": 2}, "loss": loss}
    monkeypatch.setattr(Trainer, "critic_window_every", 1)
    run = train(src, tgt, out=tmp_path / "run", overrides=cfg, progress=False)
    trainer = seen["trainer"]
    assert trainer.data.region_span_mm > 0 and trainer.data.target_slice_mm == [5.0, 5.0]
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [r["critic_window_share"] for r in rows[:2]] == ["", ""]  # epochs 1, 2: all steps in the warm-up
    assert all(0 < float(r["critic_window_share"]) <= 1 for r in rows[2:])
    allowed = trainer.target_sampler.allowed
    assert allowed is not None and allowed.numel() == round(float(rows[-1]["critic_window_share"]) * 8)
    drawn = trainer.target_sampler.draw_indices()
    assert bool(torch.isin(drawn, allowed).all())
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert torch.equal(state["critic_window"].cpu(), allowed.cpu())
    lines = [x for x in (run / "train.log").read_text().splitlines() if "critic window:" in x]
    assert len(lines) == 2 and "new" not in lines[0] and "of them new" in lines[1]  # epochs 3 and 4
    # the placement predicts on the segmentation path alone: the counts of the full forward, exactly
    net = trainer.ema if trainer.ema is not None else trainer.net
    net.eval()
    step, n = 4 * trainer.cfg.train.batch_size, len(trainer.target_sampler.slices)
    with torch.no_grad(), trainer.autocast():
        full = torch.cat([(net(trainer.represent(trainer.target_sampler.gather(torch.arange(i, min(i + step, n)))[0]))[0]
                           .argmax(1) > 0).flatten(1).sum(1) for i in range(0, n, step)])
    assert torch.equal(trainer.target_organ_pixels(), full)
    # a resumed run draws from the saved windows
    trainer.target_sampler.restrict_to(None)
    trainer.load(run / "checkpoints" / "latest.pt")
    assert torch.equal(trainer.target_sampler.allowed.cpu(), allowed.cpu())


def test_a_window_gated_off_trains_exactly_as_no_window(domains, tmp_path: Path, monkeypatch) -> None:
    src, tgt = domains
    monkeypatch.setattr("lmisa.training.data.estimate_organ_share", lambda *args: OrganShare(0.9, 0.5, 100.0))
    train_cfg = {**TINY["train"], "epochs": 2, "steps_per_epoch": 2}
    gated = {"critic_window": 1.1, "critic_window_when": "beyond_source", "adv_warmup": 0.0, "adv_ramp": 0.0}
    runs = [train(src, tgt, out=tmp_path / name, progress=False,
                  overrides={"data": TINY["data"], "train": train_cfg, "loss": loss})
            for name, loss in (("plain", {k: gated[k] for k in ("adv_warmup", "adv_ramp")}), ("gated", gated))]
    a, b = (load_checkpoint(run / "checkpoints" / "latest.pt") for run in runs)
    for key in ("net", "critic", "ema"):
        for name, tensor in a[key].items():
            torch.testing.assert_close(tensor, b[key][name], rtol=0, atol=0, msg=f"{key}.{name}")
    assert "critic_window" not in b and "off, the target does not reach beyond" in (runs[1] / "train.log").read_text()


@pytest.mark.parametrize("value, dims, variant, message", [
    (0.5, 2, "lmisa", "critic_window must be 0"), (float("nan"), 2, "lmisa", "critic_window must be 0"),
    (1.1, 3, "lmisa", "critic_window is 2D only"), (1.1, 2, "adaoutput", "peer variant adaoutput has no LMISA"),
])
def test_critic_window_is_checked(domains, tmp_path: Path, value, dims, variant, message) -> None:
    src, tgt = domains
    data = {**TINY["data"], "patch": [8, 32, 32]} if dims == 3 else TINY["data"]
    with pytest.raises(LmisaError, match=message):
        train(src, tgt, out=tmp_path / "run", progress=False, variant=variant,
              overrides={"data": data, "train": {**TINY["train"], "dims": dims}, "loss": {"critic_window": value}})


POLY = {**TINY, "train": dict(TINY["train"], steps_per_epoch=2, lr_schedule="poly")}


def test_poly_run_logs_its_rates_saves_its_schedule_and_resumes_on_it(domains, tmp_path: Path, monkeypatch) -> None:
    src, tgt = domains
    straight = train(src, tgt, out=tmp_path / "straight", overrides=POLY, progress=False)
    rates = [float(r["lr"]) for r in csv.DictReader((straight / "log.csv").open())]
    assert rates == pytest.approx([2e-3 * (1 - e / 3) ** 0.9 for e in range(3)], rel=1e-5)  # log.csv rounds
    assert Config.load(straight / "config.yaml").train.lr_schedule == "poly"
    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", overrides=POLY)
    resumed = train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)
    assert [float(r["lr"]) for r in csv.DictReader((resumed / "log.csv").open())] == rates  # the schedule resumed


@pytest.fixture
def pseudo_maps(domains, tmp_path: Path) -> Path:
    """Label maps of the target training cases standing in for a model's predictions; the target keeps no labels."""
    _, tgt = domains
    maps = tmp_path / "pseudo"
    shutil.move(tgt / "labelsTr", maps)
    return maps


def test_pseudo_labels_train_the_target_batch_without_reading_a_target_label(domains, pseudo_maps, tmp_path: Path,
                                                                             monkeypatch, seen) -> None:
    src, tgt = domains
    forbid_label_reads_under(tgt, monkeypatch)
    cfg = {**TINY, "data": dict(TINY["data"], pseudo_labels=str(pseudo_maps))}
    run = train(src, tgt, out=tmp_path / "st", variant="source_only", overrides=cfg, progress=False)
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert all(float(r["loss_pseudo"]) > 0 for r in rows) and "loss_recon" not in rows[0]
    assert "target pseudo-labels" in (run / "train.log").read_text()
    assert Config.load(run / "config.yaml").data.pseudo_labels == str(pseudo_maps.resolve())
    trainer = seen["trainer"]
    assert trainer.critic is None and trainer.target_sampler.with_labels


def test_pseudo_labels_resume_as_a_straight_run(domains, pseudo_maps, tmp_path: Path, monkeypatch) -> None:
    src, tgt = domains
    cfg = {**TINY, "data": dict(TINY["data"], pseudo_labels=str(pseudo_maps))}
    straight = train(src, tgt, out=tmp_path / "straight", variant="lmisa", overrides=cfg, progress=False)
    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", variant="lmisa", overrides=cfg)
    resumed = train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    for name, tensor in a["net"].items():
        torch.testing.assert_close(tensor, b["net"][name], rtol=0, atol=0, msg=name)


def test_pseudo_labels_are_recorded_and_a_resume_refuses_maps_changed_since(domains, pseudo_maps, tmp_path: Path,
                                                                              monkeypatch) -> None:
    src, tgt = domains
    cfg = {**TINY, "data": dict(TINY["data"], pseudo_labels=str(pseudo_maps))}
    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", variant="source_only", overrides=cfg)
    assert json.loads((tmp_path / "cut" / "split.json").read_text())["pseudo_labels_tag"]
    first = next(pseudo_maps.iterdir())
    img = nib.load(first)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), first)  # the maps made again
    with pytest.raises(LmisaError, match="changed since the run started"):
        train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)


def test_a_run_recorded_before_the_fingerprint_resumes_on_its_maps(domains, pseudo_maps, tmp_path: Path,
                                                                    monkeypatch) -> None:
    src, tgt = domains
    cfg = {**TINY, "data": dict(TINY["data"], pseudo_labels=str(pseudo_maps))}
    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", variant="source_only", overrides=cfg)
    split = json.loads((tmp_path / "cut" / "split.json").read_text())
    del split["pseudo_labels_tag"]  # as written before the fingerprint was recorded
    (tmp_path / "cut" / "split.json").write_text(json.dumps(split))
    run = train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)
    assert (run / "DONE").exists()


def test_a_map_value_the_source_lacks_is_refused_though_the_target_declares_it(domains, pseudo_maps,
                                                                              tmp_path: Path) -> None:
    src, tgt = domains
    meta = json.loads((tgt / "dataset.json").read_text())
    (tgt / "dataset.json").write_text(json.dumps({**meta, "labels": {**meta["labels"], "tumor": 5}}))
    first = sorted(pseudo_maps.iterdir())[0]
    img = nib.load(first)
    nib.save(nib.Nifti1Image(np.where(np.asarray(img.dataobj) > 0, 5, 0).astype(np.uint8), img.affine), first)
    cfg = {**TINY, "data": dict(TINY["data"], pseudo_labels=str(pseudo_maps))}
    with pytest.raises(LmisaError, match=r"label values \[5\] not declared"):
        train(src, tgt, out=tmp_path / "run", variant="source_only", overrides=cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_bad_pseudo_label_folder_is_refused_before_a_run_folder_exists(domains, pseudo_maps, tmp_path: Path) -> None:
    src, tgt = domains
    next(pseudo_maps.iterdir()).unlink()
    cfg = {**TINY, "data": dict(TINY["data"], pseudo_labels=str(pseudo_maps))}
    with pytest.raises(LmisaError, match="no pseudo-label map for target case"):
        train(src, tgt, out=tmp_path / "run", variant="source_only", overrides=cfg, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("variant, target, message", [
    ("supervised", True, "variant supervised does not train on pseudo-labels"),
    ("sifa", True, "variant sifa does not train on pseudo-labels"),
    ("source_only", False, "give --target"),
])
def test_pseudo_labels_need_a_target_and_the_lmisa_trainer(domains, pseudo_maps, tmp_path: Path, variant, target,
                                                           message) -> None:
    src, tgt = domains
    cfg = {**TINY, "data": dict(TINY["data"], pseudo_labels=str(pseudo_maps))}
    with pytest.raises(LmisaError, match=message):
        train(src, tgt if target else None, out=tmp_path / "run", variant=variant, overrides=cfg, progress=False)


def test_pseudo_label_weight_is_checked(domains, tmp_path: Path) -> None:
    src, tgt = domains
    cfg = {**TINY, "loss": {"w_pseudo": -1.0}}
    with pytest.raises(LmisaError, match="loss.w_pseudo must be a number >= 0"):
        train(src, tgt, out=tmp_path / "run", overrides=cfg, progress=False)


def test_a_progress_plot_that_fails_never_stops_a_training(domains, tmp_path: Path, monkeypatch) -> None:
    def broken(history, path):
        raise ValueError("Invalid bounding box")

    monkeypatch.setattr("lmisa.training.trainer.plot_progress", broken)
    run = train(*domains, out=tmp_path / "run", variant="source_only", overrides=TINY, progress=False)
    assert (run / "DONE").exists() and "progress.png not drawn (ValueError: Invalid bounding box)" in (run / "train.log").read_text()


def test_the_generators_adversarial_term_leaves_the_critic_untouched(domains, tmp_path: Path, seen) -> None:
    train(*domains, out=tmp_path / "run", variant="lmisa", overrides=TINY, progress=False)
    trainer = seen["trainer"]
    trainer.critic.zero_grad(set_to_none=True)
    fake = torch.rand(2, 4, 32, 32, requires_grad=True)
    trainer.generator_adversarial(fake, None).backward()
    frozen_grad = fake.grad.clone()
    assert all(p.grad is None and p.requires_grad for p in trainer.critic.parameters())
    fake.grad = None
    generator_adversarial_loss(trainer.critic, fake, None).backward()  # unfrozen: the same gradient for the maps
    torch.testing.assert_close(fake.grad, frozen_grad, rtol=0, atol=0)
