"""One typed configuration for a training run: dataclasses, YAML in and out, saved with every run.

Example:
    >>> from lmisa.config import Config, apply_variant
    >>> cfg = apply_variant(Config(), "no_shape")
    >>> cfg.loss.w_adv, cfg.variant
    (0.0, 'no_shape')
    >>> Config.from_yaml_text(cfg.to_yaml()) == cfg
    True
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from lmisa.errors import LmisaError

LMISA_VARIANTS = ("lmisa", "lmisa_paper", "no_mlngm", "no_recon", "no_shape", "source_only", "supervised")
PEER_VARIANTS = ("cyclegan_seg", "adaoutput", "sifa")  # other UDA methods, trained by their own Trainer subclasses
VARIANTS = LMISA_VARIANTS + PEER_VARIANTS
DEFAULT_EMA_DECAY = 0.99  # train.ema_decay of the LMISA variants: a ~100-step average (docs/RESULTS.md 2c)
DEFAULT_CRITIC_WINDOW = 1.1  # loss.critic_window of WINDOW_VARIANTS in 2D (docs/RESULTS.md 2ah)
WINDOW_VARIANTS = ("lmisa", "no_mlngm", "no_recon")  # the LMISA variants with a critic that take the window by default
PAPER_LR = 1e-3  # the authors' Adam learning rate, generator and critic (METHOD.md section 4)


@dataclass
class DataConfig:
    """How volumes become network inputs (the "plans" a trained model needs again at prediction)."""

    spacing: tuple[float, float] | None = None  # in-plane (sy, sx) mm; None: the source's median
    size: tuple[int, int] = (256, 256)  # in-plane crop/pad after resampling
    input: Literal["mlngm", "raw"] = "mlngm"  # raw = z-scored intensities (the no_mlngm ablation)
    mlngm_levels: int = 4
    context_slices: int = 0  # 2.5D: neighbouring slices on each side, as extra input channels
    # through-plane spacing (mm). 3D: None = the source's median. 2D: None = each scan keeps its own slices; a
    # value resamples every scan through-plane to it, so that 2.5D neighbours lie one distance apart in both domains
    spacing_z: float | None = None
    patch: tuple[int, int, int] = (16, 128, 128)  # 3D only: (D, H, W) training patch
    val_fraction: float = 0.2  # held-out part of the SOURCE cases, for model selection
    foreground_fraction: float = 0.67  # share of source slices drawn among slices with a label
    clip_percentiles: tuple[float, float] = (0.5, 99.5)  # raw intensities are clipped before scaling
    cache_dir: str | None = None  # None: $LMISA_CACHE or ~/.cache/lmisa
    # Self-training: a folder of label maps ``<case><ending>``, one per target training case, made by a trained
    # model (``lmisa predict`` on the target data set); they train the segmenter on the target batch with
    # weight ``loss.w_pseudo``. Never the target's own labels (refused). Relative paths: from the working folder.
    pseudo_labels: str | None = None


@dataclass
class ModelConfig:
    widths: tuple[int, ...] = (16, 32, 64, 128)
    # reconstruct from the bottleneck through a decoder without skips: through the U-Net skips the
    # reconstruction is nearly free and does not force a joint latent space (METHOD.md section 6)
    recon_from: Literal["decoder", "bottleneck"] = "bottleneck"
    # instance norm (the paper has none): trains faster and normalises per-image feature statistics
    norm: Literal["none", "instance", "batch"] = "instance"
    critic_widths: tuple[int, ...] = (16, 32, 64, 128)


@dataclass
class LossConfig:
    seg: Literal["ce", "dice_ce"] = "dice_ce"  # the paper: "ce"; Dice+CE helps the small organs
    w_seg: float = 40.0
    w_recon: float = 40.0
    # The critic's input gradient has norm ~1 per sample (the penalty's target) while the Dice/CE
    # gradient per sample shrinks with the image size: at weight 1 the shape term swamps the
    # segmentation term and the model collapses to background (seen on the abdominal data; see
    # docs/RESULTS.md). The default is small and switched on after a warm-up.
    w_adv: float = 0.05
    w_pseudo: float = 40.0  # the segmentation term on pseudo-labelled target slices (data.pseudo_labels)
    gp_weight: float = 10.0
    adv_warmup: float = 0.2  # share of all steps before the adversarial term starts (critic trains)
    adv_ramp: float = 0.2  # share of all steps over which its weight then rises linearly to w_adv
    real_label_smoothing: float = 0.0  # smooth the critic's "real" one-hot maps (METHOD.md section 6)
    # What the critic's "real" maps are. "labels": one-hot source labels (the paper). "predictions": the
    # segmenter's own softmax on source slices, so the critic cannot tell real from fake by softness alone
    # (METHOD.md section 6) and judges shape and layout only: output-space alignment, as AdaptSegNet does.
    critic_real: Literal["labels", "predictions"] = "labels"
    real_uniform: bool = True  # real maps drawn uniformly over source slices, like the target batch
    # How often the critic's real maps hold an organ. "source": as often as source slices do. "target":
    # as often as target slices do, estimated from anatomy (lmisa.real_prior: the source labels' organ
    # span in mm over each target scan's length; no target label, no model). "auto": "target" where that
    # estimate is higher for the target scans than for the source scans, "source" otherwise. The critic judges shapes; when the
    # target scans cover a shorter body length than the source's (MR of the abdomen, 80 % of slices hold
    # an organ, against CT from chest to pelvis, 44 %), "source" also teaches it that organs are rarer
    # than they are on the target, and the generator then erases target organs (docs/RESULTS.md 2, 2a).
    real_prior: Literal["source", "target", "auto"] = "auto"
    # Which maps the critic judges. "all": every target prediction, against real maps drawn as real_prior
    # says. "organs": only maps that hold an organ, on both sides (real maps from source slices with an
    # organ; target predictions with as many organ pixels, the others left out of both adversarial terms),
    # so that it judges the shapes of organs and never pushes a slice to hold one; real_prior then has no
    # effect. Where the target scans reach beyond the source's (MR -> CT), "all" adds false positives on
    # slices beyond the organs (docs/RESULTS.md 2j). An option: screened MR -> CT, its gate let nearly every
    # target prediction through and the false positives grew; not adopted (docs/RESULTS.md 2k).
    critic_maps: Literal["all", "organs"] = "all"
    # With critic_maps "organs": a map "holds an organ" from the q quantile of the organ pixel counts of the
    # source slices that hold one, on both sides (real maps drawn above it, target predictions judged above
    # it), instead of from min_organ_pixels (0.1 % of the frame, q = 0). The critic then compares organ
    # cross-sections given that one is there, and no prediction is pushed towards or away from holding one:
    # at 0.1 % nearly every target prediction counted as holding one (docs/RESULTS.md 2k). 0 <= q < 1; 2D. An option:
    # screened MR -> CT at 0.25, 77-89 % of the target predictions still passed and the predicted liver
    # tripled; not adopted (docs/RESULTS.md 2l).
    critic_organ_quantile: float = 0.0
    # > 0: once the adversarial term starts, the target slices of a batch (judged by the critic and
    # reconstructed) are drawn only from each target scan's window of this many times the longest organ
    # region of the source labels (first to last slice holding any organ), placed where the segmenter's
    # prediction (its weight average) holds the most organ pixels, when the adversarial term starts and every
    # 4 epochs after (lmisa.critic_window);
    # 0: from every target slice. Aimed at the slices beyond the source's body coverage, where the critic
    # adds false positives MR -> CT (docs/RESULTS.md 2j). 0 or >= 1; 2D. Screened MR -> CT at 1.1, its
    # first label-free rule failed (smaller kidneys; RESULTS 2n); on a new seed, under a rule on the false
    # positives it aims at, it became the candidate for the default (RESULTS 2o); at 7,200 steps it gained on the
    # target MR -> CT (2ad, 2af), but the default's rule failed on its CT -> MR check (RESULTS 2af, 4 pairs);
    # gated to where the target reaches beyond the source (critic_window_when), its rule held and it became the
    # default (RESULTS 2ah: 3 new MR -> CT pairs, +2.0 on organ slices, +6.3 on the whole volume, read afterwards).
    # None: the variant's default, DEFAULT_CRITIC_WINDOW for WINDOW_VARIANTS in 2D, else 0.
    critic_window: float | None = None
    # When the window applies. "always": whenever critic_window > 0. "beyond_source": only where the target
    # scans are estimated to reach beyond the source's organ coverage, that is, where fewer target slices than
    # source slices hold an organ by real_prior's anatomical estimate (no target label, no model): MR -> CT
    # here (45 % against 78 %), not CT -> MR (72 % against 44 %), where the window failed its rule's check
    # (docs/RESULTS.md 2af). It is the complement of real_prior: auto, which acts where the target is denser.
    # The default since RESULTS 2ah; "always" is how every run before that option trained.
    critic_window_when: Literal["always", "beyond_source"] = "beyond_source"


@dataclass
class AugmentConfig:
    enabled: bool = True
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.75, 1.2)
    shift: float = 0.08  # fraction of the size
    gamma: tuple[float, float] = (0.7, 1.5)
    noise_std: float = 0.0  # fixed-std noise on every image (0.05 before the appearance options)
    # Appearance augmentation of the intensities, so that the source shows the network edges as
    # another modality would draw them. With MLNGM input it needs the intensities: ``before_mlngm``
    # caches normalised intensities and computes MLNGM per batch (2D or 3D), after every augmentation.
    # Values fixed a priori, adopted by a rule written down before any real-data result (RESULTS.md).
    before_mlngm: bool = True
    remap_prob: float = 0.5  # share of images sent through a random non-monotone intensity curve
    bias_field: float = 0.3  # log-amplitude of a smooth random multiplicative field (MR-like shading)
    noise_max: float = 0.05  # per-image Gaussian noise inside the body, std uniform in [0, noise_max]


@dataclass
class TrainConfig:
    dims: int = 2
    batch_size: int = 16
    epochs: int = 40
    steps_per_epoch: int = 100
    lr: float = 2e-3  # chosen on source validation Dice (docs/RESULTS.md 1b); the paper's is PAPER_LR
    critic_lr: float = 2e-3
    # step: x lr_decay every lr_decay_every epochs (the paper's); poly: x (1 - epoch / epochs) ** 0.9 at each
    # epoch, to near zero at the end (nnU-Net's), for both the segmenter and the critic
    lr_schedule: Literal["step", "poly"] = "step"
    lr_decay: float = 0.8
    lr_decay_every: int = 10  # epochs
    # > 0: validate, select and predict with an exponential moving average of the segmenter's weights.
    # None: the variant's default, DEFAULT_EMA_DECAY for the LMISA variants (adopted by a rule written
    # before the runs, docs/RESULTS.md 2c), off for lmisa_paper and the peers; a run's saved config holds
    # the resolved number (lmisa.training.resolve_config).
    ema_decay: float | None = None
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # bf16 autocast on CUDA and on CPUs with AMX or (2D only) AVX512-BF16, which compute it natively
    # (lmisa.precision); float32 elsewhere
    amp: bool = True
    val_batches: int = 8
    log_every: int = 10  # steps between progress-bar updates (each one is a host sync)


@dataclass
class PostConfig:
    largest_component: bool = True
    # 2D prediction: average the probabilities over a few fixed in-plane views (lmisa.tta); 5x the
    # network time of a prediction. Off: on source validation it gained 0.49 Dice, its rule asked 0.5 (RESULTS 2h).
    tta: bool = False
    # > 0: cap each organ's cranio-caudal extent at this many times its longest extent in the run's training
    # labels, the source's (lmisa.extent; the run's plans hold them); 0: no cap. 1.1: adopted by a rule
    # written before it was measured, on source validation and the label-free organ-volume check (RESULTS 2m)
    extent_margin: float = 1.1


@dataclass
class PeerConfig:
    """Settings of the peer methods (lmisa.peers)."""

    stage_split: float = 0.5  # cyclegan_seg: share of the epochs that train the CycleGAN before the segmenter


@dataclass
class Config:
    variant: str = "lmisa"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    post: PostConfig = field(default_factory=PostConfig)
    peer: PeerConfig = field(default_factory=PeerConfig)

    # --- adaptation switches derived from the variant (read-only views) ---
    @property
    def uses_target_images(self) -> bool:
        return self.variant not in ("source_only", "supervised") or self.uses_pseudo_labels

    @property
    def uses_pseudo_labels(self) -> bool:
        return self.data.pseudo_labels is not None and self.loss.w_pseudo > 0

    @property
    def is_peer(self) -> bool:
        return self.variant in PEER_VARIANTS

    @property
    def weight_average_decay(self) -> float:
        """``train.ema_decay``, or the variant's default where it is None (0: no weight average)."""
        if self.train.ema_decay is not None:
            return self.train.ema_decay
        return 0.0 if self.is_peer or self.variant == "lmisa_paper" else DEFAULT_EMA_DECAY

    @property
    def critic_window_margin(self) -> float:
        """``loss.critic_window``, or the variant's default where it is None (0: no window)."""
        if self.loss.critic_window is not None:
            return self.loss.critic_window
        return DEFAULT_CRITIC_WINDOW if self.variant in WINDOW_VARIANTS and self.train.dims == 2 else 0.0

    @property
    def uses_critic(self) -> bool:
        return self.uses_target_images and self.loss.w_adv > 0

    @property
    def uses_recon(self) -> bool:
        return self.uses_target_images and self.loss.w_recon > 0

    @property
    def reads_target_labels(self) -> bool:
        return self.variant == "supervised"

    # --- YAML ---
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | Path) -> None:
        from lmisa.io import write_text_atomic

        write_text_atomic(path, self.to_yaml())

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config", saved_run: bool = False) -> "Config":
        """``saved_run``: ``data`` is a run's saved configuration; keys added since it was saved take the
        value that run trained with, not today's default (see :func:`_as_trained`)."""
        cfg = dataclass_from_dict(cls, data or {}, where)
        return _as_trained(cfg, data or {}) if saved_run else cfg

    @classmethod
    def from_yaml_text(cls, text: str, where: str = "config", saved_run: bool = False) -> "Config":
        return cls.from_dict(_yaml_mapping(text, where), where, saved_run)

    @classmethod
    def load(cls, path: str | Path, saved_run: bool = False) -> "Config":
        return cls.from_dict(read_config_mapping(path), str(path), saved_run)


def _yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """The keys a YAML config text writes ({} for an empty one); invalid YAML or a non-mapping raise LmisaError."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LmisaError(f"{where}: invalid YAML ({exc})".replace("\n", " ")) from None
    if data is not None and not isinstance(data, dict):
        raise LmisaError(f"{where}: expected a mapping at the top level")
    return data or {}


def read_config_mapping(path: str | Path) -> dict[str, Any]:
    """The keys a config file writes, as :meth:`Config.load` reads them (for merging them over other defaults)."""
    path = Path(path)
    if not path.exists():
        raise LmisaError(f"{path}: config file not found")
    return _yaml_mapping(path.read_text(encoding="utf-8"), str(path))


def _as_trained(cfg: Config, saved: dict[str, Any]) -> Config:
    """``cfg``, loaded from ``saved`` (a run's saved configuration), with the keys added since that run was
    saved set to what it trained with rather than to today's defaults: no ``augment.before_mlngm`` -> False
    (its cache held MLNGM), no ``train.ema_decay`` -> 0 (no weight average), no ``post.extent_margin`` -> 0
    (its plans hold no organ extents), no ``loss.critic_window`` -> 0 and no ``loss.critic_window_when`` ->
    ``always`` (the window's earlier default and its only behaviour)."""
    augment = saved.get("augment")
    if not isinstance(augment, dict) or "before_mlngm" not in augment:
        cfg.augment.before_mlngm = False
    post = saved.get("post")
    if not isinstance(post, dict) or "extent_margin" not in post:
        cfg.post.extent_margin = 0.0
    if cfg.train.ema_decay is None:
        cfg.train.ema_decay = 0.0
    loss = saved.get("loss")
    if cfg.loss.critic_window is None:
        cfg.loss.critic_window = 0.0
    if not isinstance(loss, dict) or "critic_window_when" not in loss:
        cfg.loss.critic_window_when = "always"
    return cfg


def apply_variant(cfg: Config, variant: str) -> Config:
    """A copy of ``cfg`` with the switches of ``variant`` set (see VARIANTS)."""
    if variant not in VARIANTS:
        raise LmisaError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    cfg = copy.deepcopy(cfg)
    cfg.variant = variant
    if variant == "no_mlngm":
        cfg.data.input = "raw"
    elif variant == "no_recon":
        cfg.loss.w_recon = 0.0
        cfg.model.recon_from = "decoder"  # no separate reconstruction decoder to carry along
    elif variant == "no_shape":
        cfg.loss.w_adv = 0.0
    elif variant in ("source_only", "supervised") or variant in PEER_VARIANTS:
        cfg.loss.w_recon = 0.0
        cfg.loss.w_adv = 0.0
        cfg.model.recon_from = "decoder"  # no separate reconstruction decoder to carry along
        if variant in PEER_VARIANTS:
            cfg.data.input = "raw"  # the published peers adapt raw intensities, not MLNGM
            cfg.augment = _without_appearance(cfg.augment)  # ... and translate images as they are
    elif variant == "lmisa_paper":
        cfg.loss = LossConfig(seg="ce", w_seg=40.0, w_recon=40.0, w_adv=1.0, gp_weight=10.0, adv_warmup=0.0,
                              adv_ramp=0.0, real_uniform=False, real_prior="source")
        cfg.model = ModelConfig(norm="none", recon_from="decoder")
        cfg.data.context_slices = 0
        cfg.post.largest_component = False
        cfg.post.extent_margin = 0.0  # the paper post-processes nothing
        cfg.augment = _without_appearance(cfg.augment)
        cfg.train = dataclasses.replace(cfg.train, lr=PAPER_LR, critic_lr=PAPER_LR)
    return cfg


def _without_appearance(aug: AugmentConfig) -> AugmentConfig:
    """``aug`` with the appearance options off: no intensity curve or shading, and the per-image noise
    back to fixed-std noise of the same size (the augmentation the paper and peer rows were measured with)."""
    noise = aug.noise_std if aug.noise_std > 0 else aug.noise_max
    return dataclasses.replace(aug, before_mlngm=False, remap_prob=0.0, bias_field=0.0, noise_max=0.0, noise_std=noise)


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def dataclass_from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """``cls`` built from its plain (YAML/JSON) form, each value checked against the field's type hint
    (numbers, integers, text, Literal choices, fixed-length tuples, mappings); LmisaError naming ``where.field``."""
    if not isinstance(data, dict):
        raise LmisaError(f"{where}: expected a mapping for {cls.__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise LmisaError(f"{where}: unknown key(s) {', '.join(unknown)} in {cls.__name__}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return dataclass_from_dict(tp, value, where)
    origin, args = get_origin(tp), get_args(tp)
    if value is None and type(None) in args:
        return None
    if origin is Literal:
        if value not in args:
            raise LmisaError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple or (origin is None and tp is tuple):
        if not isinstance(value, (list, tuple)):
            raise LmisaError(f"{where}: expected a list, got {value!r}")
        if args and args[-1] is not Ellipsis:  # tuple[X, Y]: exactly one value per position
            if len(value) != len(args):
                raise LmisaError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(t, v, where) for t, v in zip(args, value))
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise LmisaError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = args or (Any, Any)
        return {_coerce(key_type, k, where): _coerce(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if args and type(None) in args:  # Optional[X]
        inner = next(a for a in args if a is not type(None))
        return _coerce(inner, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LmisaError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise LmisaError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise LmisaError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise LmisaError(f"{where}: expected a string, got {value!r}")
        return value
    return value
