from pathlib import Path

import pytest
import yaml

from lmisa.config import (DEFAULT_CRITIC_WINDOW, DEFAULT_EMA_DECAY, PAPER_LR, PEER_VARIANTS, VARIANTS, WINDOW_VARIANTS,
                          Config, apply_variant)
from lmisa.errors import LmisaError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_shipped_default_yaml_is_the_default() -> None:
    assert Config.load(CONFIGS / "default.yaml") == Config()
    assert Config.load(CONFIGS / "paper.yaml") == apply_variant(Config(), "lmisa_paper")


@pytest.mark.parametrize("path", sorted((CONFIGS.parent / "benchmarks" / "configs").glob("*.yaml"))
                         + sorted((CONFIGS.parent / "docs" / "prereg").glob("*.yaml")), ids=lambda p: p.name)
def test_benchmark_and_preregistered_configs_load(path: Path) -> None:
    """A typo in a config a lent GPU will run would cost its device time: every one must load."""
    assert isinstance(Config.load(path), Config)


def test_yaml_roundtrip_and_partial_files(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("train: {epochs: 3}\ndata: {size: [64, 64]}\n")
    cfg = Config.load(p)
    assert cfg.train.epochs == 3 and cfg.data.size == (64, 64) and cfg.loss == Config().loss
    assert Config.from_yaml_text(cfg.to_yaml()) == cfg


@pytest.mark.parametrize("text, msg", [
    ("train: {epoch: 3}", "unknown key"),
    ("train: {epochs: three}", "expected an integer"),
    ("loss: {seg: focal}", "not one of"),
    ("[1, 2]", "mapping"),
    ("train: {epochs: [", "invalid YAML"),
    ("data: {size: [96, 96, 1]}", r"data\.size: expected 2 values"),
])
def test_bad_config_is_one_clear_error(text: str, msg: str) -> None:
    with pytest.raises(LmisaError, match=msg):
        Config.from_yaml_text(text)


def test_a_variable_length_tuple_takes_any_length() -> None:
    assert Config.from_yaml_text("model: {widths: [8, 16, 32]}").model.widths == (8, 16, 32)


def test_variants_switch_terms() -> None:
    assert apply_variant(Config(), "no_mlngm").data.input == "raw"
    assert not apply_variant(Config(), "no_shape").uses_critic
    assert not apply_variant(Config(), "no_recon").uses_recon
    so = apply_variant(Config(), "source_only")
    assert not so.uses_target_images and not so.reads_target_labels
    assert apply_variant(Config(), "supervised").reads_target_labels
    assert [v for v in VARIANTS if apply_variant(Config(), v).reads_target_labels] == ["supervised"]
    with pytest.raises(LmisaError, match="unknown variant"):
        apply_variant(Config(), "nope")


@pytest.mark.parametrize("variant", ["lmisa_paper", "sifa", "cyclegan_seg", "adaoutput"])
def test_paper_and_peer_variants_train_without_the_appearance_options(variant: str) -> None:
    cfg = Config.from_dict({"augment": {"before_mlngm": True, "remap_prob": 0.5, "bias_field": 0.3, "noise_max": 0.1}})
    aug = apply_variant(cfg, variant).augment
    assert (aug.before_mlngm, aug.remap_prob, aug.bias_field, aug.noise_max) == (False, 0.0, 0.0, 0.0)
    assert aug.noise_std == 0.1  # the per-image noise becomes fixed noise of the same size
    # with the defaults: the augmentation these rows were measured with before the appearance options
    plain = apply_variant(Config(), variant).augment
    assert (plain.before_mlngm, plain.remap_prob, plain.noise_max, plain.noise_std) == (False, 0.0, 0.0, 0.05)
    assert apply_variant(cfg, "no_shape").augment == cfg.augment  # the ablations keep them


def test_paper_variant_keeps_the_papers_learning_rate() -> None:
    cfg = Config.from_dict({"train": {"lr": 0.01, "critic_lr": 0.01}})
    paper = apply_variant(cfg, "lmisa_paper").train
    assert (paper.lr, paper.critic_lr) == (PAPER_LR, PAPER_LR)
    assert apply_variant(cfg, "lmisa").train.lr == 0.01  # every other variant takes the configured rate


@pytest.mark.parametrize("variant", VARIANTS)
def test_weight_average_default_is_resolved_per_variant(variant: str) -> None:
    from lmisa.training import resolve_config

    off = variant == "lmisa_paper" or variant in PEER_VARIANTS
    assert apply_variant(Config(), variant).train.ema_decay is None  # still "the variant's default"
    assert resolve_config(variant=variant).train.ema_decay == (0.0 if off else DEFAULT_EMA_DECAY)


def test_weight_average_set_by_the_user_is_kept() -> None:
    cfg = Config.from_dict({"train": {"ema_decay": 0.0}})
    assert apply_variant(cfg, "lmisa").train.ema_decay == 0.0
    assert apply_variant(Config.from_dict({"train": {"ema_decay": 0.9}}), "lmisa_paper").train.ema_decay == 0.9


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dims", [2, 3])
def test_critic_window_default_is_resolved_per_variant_and_dims(variant: str, dims: int) -> None:
    from lmisa.training import resolve_config

    on = variant in WINDOW_VARIANTS and dims == 2
    assert apply_variant(Config(), variant).loss.critic_window is None  # still "the variant's default"
    resolved = resolve_config(variant=variant, dims=dims).loss
    assert (resolved.critic_window, resolved.critic_window_when) == (DEFAULT_CRITIC_WINDOW if on else 0.0, "beyond_source")


def test_critic_window_set_by_the_user_is_kept() -> None:
    from lmisa.training import resolve_config

    assert apply_variant(Config.from_dict({"loss": {"critic_window": 0.0}}), "lmisa").critic_window_margin == 0.0
    assert resolve_config(variant="lmisa_paper", overrides={"loss": {"critic_window": 1.5}}).loss.critic_window == 1.5


def test_a_saved_run_keeps_what_it_trained_with() -> None:
    """Keys added after a run was saved take the value that run trained with, not today's default."""
    old = {"augment": {"rotate_deg": 10.0}, "train": {"epochs": 2}, "post": {"tta": False}}
    cfg = Config.from_dict(old, saved_run=True)
    assert cfg.augment.before_mlngm is False and cfg.train.ema_decay == 0.0 and cfg.post.extent_margin == 0.0
    assert (cfg.loss.critic_window, cfg.loss.critic_window_when) == (0.0, "always")
    new = {"augment": {"before_mlngm": True}, "train": {"ema_decay": 0.99}, "post": {"extent_margin": 1.1},
           "loss": {"critic_window": 1.1, "critic_window_when": "beyond_source"}}
    cfg = Config.from_dict(new, saved_run=True)
    assert cfg.augment.before_mlngm is True and cfg.train.ema_decay == 0.99 and cfg.post.extent_margin == 1.1
    assert (cfg.loss.critic_window, cfg.loss.critic_window_when) == (1.1, "beyond_source")
    window_only = Config.from_dict({"loss": {"critic_window": 1.1}}, saved_run=True).loss  # saved before the gate
    assert (window_only.critic_window, window_only.critic_window_when) == (1.1, "always")


@pytest.mark.parametrize("value", [0.0, -2.5])
def test_a_through_plane_spacing_must_be_positive(value: float) -> None:
    from lmisa.training import resolve_config

    with pytest.raises(LmisaError, match=r"data.spacing_z .*must be > 0"):
        resolve_config(overrides={"data": {"spacing_z": value}})
    assert resolve_config(overrides={"data": {"spacing_z": 5.0}}).data.spacing_z == 5.0


@pytest.mark.parametrize("variant, key, edited", [
    ("lmisa_paper", ("train", "lr"), 5e-4), ("lmisa_paper", ("loss", "w_seg"), 20.0),
    ("source_only", ("loss", "w_adv"), 0.5), ("sifa", ("augment", "remap_prob"), 0.3),
])
def test_an_edited_printed_config_comes_back_as_edited(tmp_path, variant: str, key: tuple[str, str], edited) -> None:
    """``lmisa train --print-config --variant V`` saved, edited and passed back with --config (no --variant)."""
    from lmisa.training import resolve_config

    printed = resolve_config(variant=variant).to_dict()
    printed[key[0]][key[1]] = edited
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(printed))
    cfg = resolve_config(path)
    assert cfg.variant == variant and getattr(getattr(cfg, key[0]), key[1]) == edited
    assert resolve_config(path, variant=variant).to_dict() == cfg.to_dict()  # naming its own variant: the same


def test_a_partial_config_takes_its_variants_switches_and_another_variant_is_set_over_it(tmp_path) -> None:
    from lmisa.training import resolve_config

    path = tmp_path / "partial.yaml"
    path.write_text("variant: source_only\ntrain: {epochs: 3}\n")
    cfg = resolve_config(path)
    assert cfg.variant == "source_only" and cfg.loss.w_adv == 0 and cfg.loss.w_recon == 0 and cfg.train.epochs == 3
    other = resolve_config(path, variant="lmisa_paper")
    assert other.variant == "lmisa_paper" and other.loss.w_adv == 1.0 and other.train.epochs == 3
