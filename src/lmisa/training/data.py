"""From two data set folders to slices in memory: check, split, plan, cache, load.

The UDA rule lives here: the target domain is opened without labels (its label files are never
listed, read or cached) unless the variant is ``supervised``, the upper bound that says so.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lmisa.config import PEER_VARIANTS, Config
from lmisa.critic_window import check_critic_window
from lmisa.datasets import Case, Domain, Problem, check_domain, raise_problems, split_cases
from lmisa.errors import LmisaError
from lmisa.extent import check_extent_margin, longest_extents_mm
from lmisa.io import slice_spacing_mm
from lmisa.orientation import axis_codes, known, needs_turning, orientation_problems
from lmisa.preprocess import (
    Plans,
    SliceSet,
    build_cache,
    cache_dir_for,
    default_cache_root,
    label_cut_shares,
    load_slices,
    median_inplane_spacing,
    median_slice_spacing,
)
from lmisa.real_prior import OrganShare, estimate_organ_share, organ_spans_mm
from lmisa.sampling import min_organ_pixels, organ_slices


@dataclass
class TrainingData:
    plans: Plans
    split: dict[str, list[str]]
    source_train: SliceSet
    source_val: SliceSet
    target_train: SliceSet | None
    organ_share: OrganShare | None = None  # loss.real_prior "target" / "auto" (lmisa.real_prior)
    # loss.critic_window (lmisa.critic_window): the longest organ region of the source training labels (mm)
    # and each target training case's slice spacing
    region_span_mm: float | None = None
    target_slice_mm: list[float] | None = None
    # loss.critic_window_when: beyond_source found that the target does not reach beyond the source's organs
    critic_window_off: bool = False
    pseudo_labels_tag: str | None = None  # data.pseudo_labels: the maps' fingerprint, recorded in split.json


def make_plans(cfg: Config, source: Domain) -> Plans:
    """Resolve the data settings: the in-plane spacing defaults to the source's median; the voxel axes are the
    first training image's (lmisa.orientation: every image is turned into them)."""
    images = [c.image for c in source.cases("train")]
    codes = axis_codes(images[0]) if images else None
    spacing = cfg.data.spacing or median_inplane_spacing(images)
    spacing_z = cfg.data.spacing_z
    if cfg.train.dims == 3 and not spacing_z:
        spacing_z = median_slice_spacing(images)
    return Plans(
        spacing=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        size=tuple(cfg.data.size),  # type: ignore[arg-type]
        input=cfg.data.input,
        mlngm_levels=cfg.data.mlngm_levels,
        context_slices=cfg.data.context_slices,
        clip_percentiles=tuple(cfg.data.clip_percentiles),  # type: ignore[arg-type]
        labels=dict(source.labels),
        dims=cfg.train.dims,
        spacing_z=spacing_z,
        axis_codes=codes if known(codes) else None,
    )


def online_mlngm(cfg: Config) -> bool:
    """True when the cache holds intensities and the trainer computes MLNGM per batch (after augmenting)."""
    return cfg.augment.before_mlngm and cfg.data.input == "mlngm"


def network_input(x: torch.Tensor, cfg: Config) -> torch.Tensor:
    """The network's input from cached slices (2D) or patches (3D), in training and prediction alike: MLNGM
    per channel when the cache holds intensities (:func:`online_mlngm`), then z-scoring per sample and channel."""
    from lmisa.augment import standardise
    from lmisa.mlngm import mlngm_channels

    if online_mlngm(cfg):
        x = mlngm_channels(x, cfg.data.mlngm_levels, dims=cfg.train.dims)
    return standardise(x)


def check_weight_average(cfg: Config) -> None:
    """``train.ema_decay`` (None: the variant's default) in [0, 1) (0: off), and only for the LMISA
    variants: checked before any caching."""
    decay = cfg.weight_average_decay
    if not 0 <= decay < 1:
        raise LmisaError(f"train.ema_decay must be in [0, 1) (0: off), got {decay}")
    if decay > 0 and cfg.variant in PEER_VARIANTS:
        raise LmisaError(f"train.ema_decay: the peer variant {cfg.variant} has no weight average")


def check_real_prior(cfg: Config) -> None:
    """The options of the critic's maps agree: ``loss.real_prior: target`` re-weights maps drawn
    uniformly; label smoothing needs label maps; ``loss.critic_window`` is valid and for LMISA's critic."""
    L = cfg.loss
    if L.real_prior == "target" and cfg.uses_critic and not L.real_uniform:
        raise LmisaError("loss.real_prior: target needs loss.real_uniform: true (the real maps it re-weights)")
    if L.critic_maps == "organs" and cfg.uses_critic and not L.real_uniform:
        raise LmisaError("loss.critic_maps: organs needs loss.real_uniform: true (the real maps it draws from organ slices)")
    if not 0.0 <= L.critic_organ_quantile < 1.0:
        raise LmisaError(f"loss.critic_organ_quantile must be in [0, 1), got {L.critic_organ_quantile}")
    if L.critic_organ_quantile > 0 and cfg.train.dims == 3:
        raise LmisaError("loss.critic_organ_quantile is 2D only: its size is counted on whole slices, a 3D patch "
                         "shows a window of one (set it to 0 with train.dims: 3)")
    if L.critic_organ_quantile > 0 and L.critic_maps != "organs":
        raise LmisaError("loss.critic_organ_quantile sets the organ size of loss.critic_maps: organs; it is ignored "
                         f"with critic_maps: {L.critic_maps} (set it to 0 or critic_maps to organs)")
    if L.critic_real == "predictions" and L.real_label_smoothing > 0 and cfg.uses_critic:
        raise LmisaError("loss.real_label_smoothing smooths label maps: set it to 0 with loss.critic_real: predictions")
    check_critic_window(cfg.critic_window_margin, cfg.train.dims)
    if cfg.critic_window_margin > 0 and cfg.variant in PEER_VARIANTS:
        raise LmisaError(f"loss.critic_window: the peer variant {cfg.variant} has no LMISA shape critic (set it to 0)")


def check_augment(cfg: Config) -> None:
    """Intensity-curve and shading augmentation need intensities, not a cached MLNGM map."""
    aug = cfg.augment
    needs = [k for k in ("remap_prob", "bias_field") if getattr(aug, k) > 0]
    if needs and cfg.data.input == "mlngm" and not aug.before_mlngm:
        raise LmisaError(f"augment.{needs[0]} changes intensities: with MLNGM input set augment.before_mlngm: true")


def case_slice_mm(plans: Plans, domain: Domain, names: list[str]) -> list[float]:
    """Slice spacing (mm) of the cases ``names`` as cached: ``spacing_z`` where the volumes are resampled
    to it (3D, or 2D with ``data.spacing_z``), the headers' otherwise (2D keeps the slices)."""
    if plans.spacing_z:
        return [float(plans.spacing_z)] * len(names)
    images = {c.name: c.image for c in domain.cases("train")}
    return [slice_spacing_mm(images[n]) for n in names]


def make_split(cfg: Config, source: Domain, target: Domain | None) -> dict[str, list[str]]:
    names = [c.name for c in source.cases("train")]
    parts = split_cases(names, val_fraction=cfg.data.val_fraction, seed=cfg.train.seed)
    split = {"source_train": parts["train"], "source_val": parts["val"]}
    split["target_train"] = [c.name for c in target.cases("train")] if target is not None else []
    return split


def _cache_domain(
    domain: Domain, names: list[str], plans: Plans, with_labels: bool, cache_root: Path, progress: bool, what: str
) -> dict[str, Path]:
    cases = {c.name: c for c in domain.cases("train")}
    missing = [n for n in names if n not in cases]
    if missing:
        raise LmisaError(f"{domain.root}: cases in the split are missing: {', '.join(missing)}")
    jobs = [(n, cases[n].image, cases[n].label if with_labels else None) for n in names]
    folder = _cache_folder(domain, [cases[n].image for n in names], plans, cache_root)
    if not with_labels:
        folder = folder.with_name(folder.name + "-nolabel")  # an unlabelled cache never holds labels
    files, errors = build_cache(jobs, folder, plans, progress=progress, description=what)
    raise_problems(errors, f"{domain.root}")
    return files


def _cache_folder(domain: Domain, images: list[Path], plans: Plans, cache_root: Path) -> Path:
    """The cache folder of ``domain`` under ``plans``: a folder of its own when some image is turned into
    ``plans.axis_codes`` (lmisa.orientation), so that a data set cached as stored is never read as turned."""
    folder = cache_dir_for(domain.root, plans, cache_root)
    return folder.with_name(f"{folder.name}-axes{plans.axis_codes}") if needs_turning(images, plans.axis_codes) else folder


def prepare_training_data(
    cfg: Config,
    source_path: Path,
    target_path: Path | None,
    split: dict[str, list[str]] | None = None,
    progress: bool = True,
    log: logging.Logger | None = None,
    checked: bool = False,
    saved_plans: Plans | None = None,
) -> TrainingData:
    """Check both domains (unless ``checked``: :func:`check_training_inputs` ran already), plan, split (or reuse
    ``split``), cache and load the slices. ``saved_plans``: a resumed run's, whose voxel axes it keeps (None in a
    run from before they were recorded: images as stored)."""
    if not checked:
        check_training_inputs(cfg, source_path, target_path)
    supervised = cfg.reads_target_labels
    labelled_path = _labelled_path(cfg, source_path, target_path)
    labelled = Domain.open(labelled_path)
    unlabelled = Domain.open(target_path) if _reads_target_images(cfg, target_path) else None
    for domain in filter(None, (labelled, unlabelled)):
        if log and len(domain.channel_names) > 1:
            log.warning("%s declares channels %s: lmisa reads channel 0 (%s) only", domain.root,
                        ", ".join(map(str, domain.channel_names)), domain.channel_names.get("0", "?"))
    if supervised and log:
        log.warning("variant 'supervised' reads the TARGET labels (%s): an upper bound, not UDA", target_path)
    plans = make_plans(cfg, labelled)
    if saved_plans is not None:
        plans = replace(plans, axis_codes=saved_plans.axis_codes)
    split = split or make_split(cfg, labelled, unlabelled)
    cache_root = default_cache_root(cfg.data.cache_dir)
    # the run's plans (saved for prediction) keep "mlngm"; only the training cache holds intensities
    cache_plans = replace(plans, input="raw") if online_mlngm(cfg) else plans
    src_files = _cache_domain(
        labelled, split["source_train"] + split["source_val"], cache_plans, True, cache_root, progress, "labelled cases"
    )
    warn_labels_cut(plans, label_cut_shares(src_files), len(src_files), log)
    source_train = load_slices(src_files, split["source_train"], with_labels=True)
    source_val = load_slices(src_files, split["source_val"], with_labels=True)
    source_mm = case_slice_mm(plans, labelled, split["source_train"])  # read once: the extents and the organ share
    extents = longest_extents_mm(source_train, source_mm, plans.labels)
    plans = replace(plans, organ_extent_mm=extents)  # saved with the run, for post.extent_margin
    target_train = tag = None
    if unlabelled is not None and split.get("target_train"):
        if cfg.uses_pseudo_labels:
            target_train, tag = _pseudo_labelled(cfg, unlabelled, split, cache_plans, cache_root, progress, log)
        else:
            tgt_files = _cache_domain(
                unlabelled, split["target_train"], cache_plans, False, cache_root, progress, "target images"
            )
            target_train = load_slices(tgt_files, split["target_train"], with_labels=False)
    if log:
        log.info(
            "plans %s; slices: source train %d, source val %d, target %s",
            json.dumps({"spacing": plans.spacing, "size": plans.size, "input": plans.input}),
            len(source_train),
            len(source_val),
            len(target_train) if target_train is not None else "-",
        )
    share = region = target_mm = None
    window_off = False
    if cfg.uses_critic and target_train is not None:
        target_mm = case_slice_mm(plans, unlabelled, split["target_train"])
        if cfg.loss.real_prior != "source" and cfg.loss.real_uniform:
            share = _organ_share(cfg, plans, source_train, source_mm, target_train, target_mm, log)
        if cfg.critic_window_margin > 0:
            if cfg.loss.critic_window_when == "beyond_source":
                window_off = not _target_beyond_source(
                    share, lambda: _estimate_organ_share(plans, source_train, source_mm, target_train, target_mm), log)
            spans = organ_spans_mm(source_train, source_mm, min_organ_pixels(plans.size))
            if not spans and not window_off:
                raise LmisaError(f"loss.critic_window: no case of {labelled_path} has an organ slice to measure its region")
            region = max(spans, default=None)
    return TrainingData(plans, split, source_train, source_val, target_train, share, region, target_mm,
                        critic_window_off=window_off, pseudo_labels_tag=tag)


LABEL_CUT_WARNING = 0.01  # a labelled case losing more of its organ voxels to the crop is named


def warn_labels_cut(plans: Plans, shares: dict[str, float], n_cases: int, log: logging.Logger | None) -> None:
    """Warn when the crop to ``data.size`` cuts organ voxels from labelled cases: the network would learn
    truncated organs (native-resolution CT at the default 256 x 256 keeps under 200 mm). ``shares`` holds the
    cases cached since the share is recorded, of ``n_cases``."""
    if log is None:
        return
    if len(shares) < n_cases:
        log.info("crop check: %d of %d labelled cases were cached before it was recorded (not checked)",
                 n_cases - len(shares), n_cases)
    cut = {n: v for n, v in shares.items() if v > LABEL_CUT_WARNING}
    if not cut:
        return
    fov = " x ".join(f"{n * sp:.0f}" for n, sp in zip(plans.size, plans.spacing))
    worst = max(cut, key=cut.get)
    log.warning("data.size %s at %s mm frames %s mm: the crop cuts organ voxels from %d of %d labelled cases "
                "(%s: %.0f %%); raise data.size or data.spacing (`lmisa ceiling` scores a grid from the labels)",
                "x".join(map(str, plans.size)), "x".join(f"{sp:g}" for sp in plans.spacing), fov, len(cut),
                len(shares), worst, 100 * cut[worst])


def _labelled_path(cfg: Config, source_path: Path, target_path: Path | None) -> Path:
    """The labelled cases a run trains on: the source's, or the target's for ``supervised`` (source unused)."""
    return target_path if cfg.reads_target_labels and target_path is not None else source_path


def _reads_target_images(cfg: Config, target_path: Path | None) -> bool:
    return target_path is not None and not cfg.reads_target_labels and cfg.uses_target_images


def check_training_inputs(cfg: Config, source_path: Path, target_path: Path | None) -> None:
    """Every check of a run's inputs that needs no caching, so that a bad input is refused before a run folder
    exists: the options, the variant's needs, each data set (lmisa.datasets.check_domain), the target's label
    table against the source's, and voxel axes along one set of anatomical axes (lmisa.orientation)."""
    check_augment(cfg)
    check_weight_average(cfg)
    check_real_prior(cfg)
    check_extent_margin(cfg.post.extent_margin)
    check_pseudo_labels(cfg, target_path)
    if cfg.reads_target_labels and target_path is None:
        raise LmisaError("variant 'supervised' trains on the target's labels: give --target")
    if cfg.uses_target_images and target_path is None:
        raise LmisaError(f"variant {cfg.variant} needs the target domain's images: give --target (its labels are "
                         "not read), or --variant source_only")
    labelled_path = _labelled_path(cfg, source_path, target_path)
    raise_problems(check_domain(labelled_path, require_labels=True), str(labelled_path))
    labelled = Domain.open(labelled_path)
    images = [c.image for c in labelled.cases("train")]
    if len(images) < 2:
        raise LmisaError(f"{labelled_path}: {len(images)} labelled case(s); training needs at least 2 (cases are held "
                         "out for validation and model selection)")
    if _reads_target_images(cfg, target_path):
        raise_problems(check_domain(target_path, require_labels=False), str(target_path))
        target = Domain.open(target_path)
        raise_problems(label_table_problems(labelled, target), str(target_path))
        target_cases = target.cases("train")
        if cfg.uses_pseudo_labels:  # every map checked here, before a run folder exists
            from lmisa.pseudo_labels import pseudo_label_jobs

            pseudo_label_jobs(cfg.data.pseudo_labels, target, [c.name for c in target_cases], labelled.labels)
        images += [c.image for c in target_cases]
    raise_problems(orientation_problems(images), "voxel orientation")


def _label_key(name: str) -> str:
    return name.casefold().replace(" ", "_").replace("-", "_")


def label_table_problems(source: Domain, target: Domain) -> list[Problem]:
    """A structure that both ``dataset.json`` files name (case, spaces and hyphens aside) must have one value:
    predictions carry the source's values, and evaluation reads them by the target's names. Other names (a
    placeholder table of an unlabelled target, fewer labels) are no problem."""
    source_values = {_label_key(n): (n, v) for n, v in source.labels.items()}
    conflicts = [f"{name}: {value} (source {source_values[_label_key(name)][0]}: {source_values[_label_key(name)][1]})"
                 for name, value in target.labels.items()
                 if _label_key(name) in source_values and source_values[_label_key(name)][1] != value]
    if not conflicts:
        return []
    return [Problem(target.root / "dataset.json", "labels differ from the source's (" + "; ".join(conflicts)
                    + "); give each structure the source's value in the target's dataset.json")]


def check_pseudo_labels(cfg: Config, target_path: Path | None) -> None:
    """``data.pseudo_labels`` needs a target data set and the LMISA trainer (its target batch); the bound and the
    peers do not take it. Checked before any caching."""
    if not math.isfinite(cfg.loss.w_pseudo) or cfg.loss.w_pseudo < 0:
        raise LmisaError(f"loss.w_pseudo must be a number >= 0 (0: pseudo-labels off), got {cfg.loss.w_pseudo}")
    if not cfg.uses_pseudo_labels:
        return
    if cfg.reads_target_labels or cfg.is_peer:
        raise LmisaError(f"data.pseudo_labels: variant {cfg.variant} does not train on pseudo-labels")
    if target_path is None:
        raise LmisaError("data.pseudo_labels labels target training cases: give --target")


def _pseudo_labelled(
    cfg: Config, target: Domain, split: dict, plans: Plans, cache_root: Path, progress: bool,
    log: logging.Logger | None,
) -> tuple[SliceSet, str]:
    """The target training slices with the labels of ``data.pseudo_labels`` (lmisa.pseudo_labels; the maps were
    checked by :func:`check_training_inputs`), cached apart from the images-only cache and keyed by the maps'
    files, and the maps' fingerprint. A resumed run's ``split`` holds the fingerprint it started with."""
    from lmisa.pseudo_labels import check_same_pseudo_labels, pseudo_label_jobs, pseudo_label_tag

    names = split["target_train"]
    jobs = pseudo_label_jobs(Path(cfg.data.pseudo_labels), target, names, check=False)
    check_same_pseudo_labels(split.get("pseudo_labels_tag"), jobs, str(cfg.data.pseudo_labels))
    tag = pseudo_label_tag(jobs)
    folder = _cache_folder(target, [image for _, image, _ in jobs], plans, cache_root)
    folder = folder.with_name(f"{folder.name}-pseudo-{tag}")
    files, errors = build_cache(jobs, folder, plans, progress=progress, description="target pseudo-labels")
    raise_problems(errors, str(cfg.data.pseudo_labels))
    labelled = load_slices(files, names, with_labels=True)
    if log:
        share = float(organ_slices(labelled.labels).float().mean())
        log.info("target pseudo-labels: %s (%d cases, %.0f %% of slices hold an organ, fingerprint %s), weight %g",
                 cfg.data.pseudo_labels, len(names), 100 * share, tag, cfg.loss.w_pseudo)
    return labelled, tag


def _estimate_organ_share(
    plans: Plans, source_train: SliceSet, source_mm: list[float], target_train: SliceSet, target_mm: list[float],
) -> OrganShare:
    """lmisa.real_prior's estimate over these slice sets: how often source and target slices hold an organ."""
    lengths = [int(n) for n in target_train.case_lengths.tolist()]
    return estimate_organ_share(source_train, source_mm, lengths, target_mm, min_organ_pixels(plans.size))


def _organ_share(
    cfg: Config, plans: Plans, source_train: SliceSet, source_mm: list[float], target_train: SliceSet,
    target_mm: list[float], log: logging.Logger | None,
) -> OrganShare | None:
    """How often source and target slices hold an organ, from the source labels' organ span and the
    scans' lengths (no target label), with the slice spacings of :func:`case_slice_mm`. Without an organ
    span in the source labels: an error for ``real_prior: target``, a warning and None (uniform real maps)
    for ``auto``."""
    try:
        return _estimate_organ_share(plans, source_train, source_mm, target_train, target_mm)
    except ValueError as exc:
        if cfg.loss.real_prior == "target":
            raise LmisaError(f"loss.real_prior: target: {exc}") from exc
        if log:
            log.warning("loss.real_prior: auto: %s; the critic's real maps stay uniform", exc)
        return None


def _target_beyond_source(share: OrganShare | None, estimate: Callable[[], OrganShare],
                          log: logging.Logger | None) -> bool:
    """``loss.critic_window_when: beyond_source``: whether fewer target slices than source slices are
    estimated to hold an organ (no target label), so that the target scans reach beyond the source's organ
    coverage and the critic's window applies. ``share``: real_prior's estimate where it made one, else
    ``estimate()`` makes it; without an organ span in the source labels there is none, and the window stays off."""
    if share is None:
        try:
            share = estimate()
        except ValueError as exc:
            if log:
                log.warning("critic window (when beyond_source): off, %s", exc)
            return False
    beyond = share.target < share.source
    if log:
        log.info("critic window (when beyond_source): %s; the target scans are estimated at %.0f %% organ slices, "
                 "the source scans at %.0f %%", "on" if beyond else "off, the target does not reach beyond the source",
                 100 * share.target, 100 * share.source)
    return beyond


__all__ = ["TrainingData", "prepare_training_data", "make_plans", "make_split", "online_mlngm", "network_input", "check_augment", "check_weight_average", "check_real_prior", "check_pseudo_labels", "check_training_inputs", "label_table_problems", "case_slice_mm", "Case"]
