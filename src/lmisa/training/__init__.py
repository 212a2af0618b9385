"""Training: ``train()`` is the Python entry point behind ``lmisa train``.

Example (on tiny phantoms; see ``lmisa synth``)::

    from lmisa.training import train
    run = train("ph/CT", "ph/MR", variant="lmisa", out="runs/demo", overrides={"train": {"epochs": 2}})

``check_run()`` makes the same checks of the inputs and returns the config, without training.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

from lmisa.config import Config, apply_variant, read_config_mapping
from lmisa.errors import LmisaError
from lmisa.io import write_text_atomic


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _config_file(path: Path, variant: str | None) -> Config:
    """A YAML config under ``variant``. The variant the file names sets its switches as defaults that the file's
    own keys override, so an edited ``--print-config`` comes back as edited; another variant's switches are set
    over the file (``--config configs/paper.yaml --variant source_only``: no critic, whatever the file says)."""
    written = read_config_mapping(path)
    cfg = Config.from_dict(written, str(path))
    if variant is not None and variant != cfg.variant:
        return apply_variant(cfg, variant)
    return Config.from_dict(_merge(apply_variant(Config(), cfg.variant).to_dict(), written), str(path))


def resolve_config(
    config: str | Path | Config | None = None,
    variant: str | None = None,
    dims: int | None = None,
    device: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Config file (or object) + variant switches + explicit overrides, in that order; a file's own variant
    gives its switches under the file's keys (see ``_config_file``)."""
    if config and not isinstance(config, Config):
        cfg = _config_file(Path(config), variant)
    else:
        cfg = config if isinstance(config, Config) else Config()
        cfg = apply_variant(cfg, variant or cfg.variant)
    if overrides:
        cfg = Config.from_dict(_merge(cfg.to_dict(), overrides), "overrides")
    if dims is not None:
        cfg.train.dims = dims
    if device is not None:
        cfg.train.device = device
    if cfg.train.epochs < 1 or cfg.train.steps_per_epoch < 1:
        raise LmisaError(f"train.epochs {cfg.train.epochs} x steps_per_epoch {cfg.train.steps_per_epoch}: both must be "
                         "at least 1")
    if cfg.train.dims not in (2, 3):
        raise LmisaError(f"--dims {cfg.train.dims}: choose 2 (slices) or 3 (patches)")
    if cfg.data.spacing_z is not None and not cfg.data.spacing_z > 0:
        raise LmisaError(f"data.spacing_z {cfg.data.spacing_z}: a through-plane spacing in mm must be > 0 (or null)")
    if cfg.train.dims == 3:
        cfg.data.context_slices = 0  # 3D patches carry their own context
        depth = 2 ** (len(cfg.model.widths) - 1)
        if any(p % depth for p in cfg.data.patch):
            raise LmisaError(f"data.patch {tuple(cfg.data.patch)}: every side must be a multiple of {depth}")
        if any(p > s for p, s in zip(cfg.data.patch[1:], cfg.data.size)):
            raise LmisaError(f"data.patch {tuple(cfg.data.patch)} is larger in-plane than data.size {tuple(cfg.data.size)}")
    cfg.train.ema_decay = cfg.weight_average_decay  # resolved for this variant: the saved config says what ran
    cfg.loss.critic_window = cfg.critic_window_margin
    return cfg


def check_run(
    source: str | Path,
    target: str | Path | None,
    config: str | Path | Config | None = None,
    variant: str | None = None,
    dims: int | None = None,
    device: str | None = None,
    overrides: dict[str, Any] | None = None,
    device_check: bool = True,
    out: str | Path | None = None,
) -> Config:
    """Every check a new run makes before its folder exists, and the config it would train with: the options, the
    device (when ``device_check``; under torchrun each rank is given its own), each data set read in full, the
    label tables, the voxel axes, the pseudo-label maps, and ``out`` (when given: a folder a new run may use).
    Raises LmisaError naming the file. Nothing is written.

    ``lmisa train --dry-run`` runs this alone, so a long training is not the first to find a bad input.
    """
    from lmisa.training.data import check_training_inputs
    from lmisa.training.trainer import resolve_device

    cfg = resolve_config(config, variant, dims, device, overrides)
    if cfg.data.pseudo_labels:  # saved absolute: a resume from another folder finds the same maps
        cfg.data.pseudo_labels = str(Path(cfg.data.pseudo_labels).resolve())
    if device_check:
        resolve_device(cfg.train.device)  # an unknown or absent device is refused before any work
    check_training_inputs(cfg, Path(source), Path(target) if target is not None else None)
    if out is not None:
        from lmisa.training.run import check_new_run_dir

        check_new_run_dir(Path(out))
    return cfg


def train(
    source: str | Path,
    target: str | Path | None,
    out: str | Path | None = None,
    config: str | Path | Config | None = None,
    variant: str | None = None,
    dims: int | None = None,
    device: str | None = None,
    resume: bool = False,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Train one run and return its folder (see lmisa.training.run for what it holds).

    Under ``torchrun`` (WORLD_SIZE > 1) every rank trains with DDP; rank 0 writes the run folder.
    """
    from lmisa.training import run as runfiles
    from lmisa.training.trainer import resolve_device

    from lmisa.training import distributed

    source = Path(source)
    target = Path(target) if target is not None else None
    ctx = None
    if distributed.launched_by_torchrun():
        wanted = device or (Config.load(Path(out) / runfiles.CONFIG).train.device if resume and out else "auto")
        ctx = distributed.init_from_env(resolve_device(wanted).type)
        if out is None:
            raise LmisaError("distributed training needs --out (every rank must write to the same run)")
    is_main = ctx is None or ctx.rank == 0
    try:
        return _train(source, target, out, config, variant, dims, device, resume, progress and is_main, overrides, ctx)
    finally:
        if ctx is not None:
            distributed.shutdown()


def _train(source, target, out, config, variant, dims, device, resume, progress, overrides, ctx) -> Path:
    with contextlib.ExitStack() as held:  # the run folder's lock, from when it is made until training ends
        return _train_holding(source, target, out, config, variant, dims, device, resume, progress, overrides, ctx, held)


def _train_holding(source, target, out, config, variant, dims, device, resume, progress, overrides, ctx, held) -> Path:
    from lmisa.preprocess import load_plans
    from lmisa.training import run as runfiles
    from lmisa.training.data import check_training_inputs, prepare_training_data
    from lmisa.training.trainer import resolve_device
    from lmisa.training.variants import trainer_class

    is_main = ctx is None or ctx.rank == 0
    if resume:
        if out is None:
            raise LmisaError("--resume needs --out RUN_DIR")
        run_dir = runfiles.prepare_run_dir(Path(out), resume=True)
        if is_main:
            held.enter_context(runfiles.run_lock(run_dir))
        cfg = Config.load(run_dir / runfiles.CONFIG, saved_run=True)  # keys added since: as it trained
        if device is not None:
            cfg.train.device = device
        split = runfiles.read_run_split(run_dir)
        saved_plans = load_plans(run_dir / runfiles.PLANS)
        check_training_inputs(cfg, source, target)  # on every rank, before any barrier
    else:
        cfg = check_run(source, target, config, variant, dims, device, overrides, device_check=ctx is None)
        saved_plans = None
        run_dir = Path(out) if out else runfiles.default_run_dir(source, target, cfg.variant)
        if is_main:
            runfiles.prepare_run_dir(run_dir, False)
            held.enter_context(runfiles.run_lock(run_dir))
        split = None
    if ctx is not None:
        ctx.barrier()  # rank 0 made the folder; the others only read from here on
    log = runfiles.file_logger(run_dir) if is_main else runfiles.null_logger()
    if ctx is not None and not is_main:
        ctx.barrier()  # rank 0 builds the cache first
    data = prepare_training_data(cfg, source, target, split=split, progress=progress, log=log, checked=True,
                                 saved_plans=saved_plans)
    if ctx is not None and is_main:
        ctx.barrier()
    if not resume and is_main:
        cfg.data.spacing = tuple(data.plans.spacing)  # resolved: written out in full
        cfg.save(run_dir / runfiles.CONFIG)
        write_text_atomic(run_dir / runfiles.PLANS, data.plans.to_json())
        meta = dict(data.split, source=str(source.resolve()), target=str(target.resolve()) if target else None)
        if data.pseudo_labels_tag is not None:
            meta["pseudo_labels_tag"] = data.pseudo_labels_tag  # a resume refuses maps changed since
        write_text_atomic(run_dir / runfiles.SPLIT, json.dumps(meta, indent=2))
    elif resume:
        if saved_plans.cache_key() != data.plans.cache_key():
            raise LmisaError(f"{run_dir}: the data settings changed since the run started; start a new run")
    device_ = ctx.device if ctx is not None else resolve_device(cfg.train.device)
    trainer = trainer_class(cfg.variant)(cfg, data, run_dir, device=device_, progress=progress, log=log, distributed=ctx)
    if resume:
        trainer.load(run_dir / runfiles.CKPT_DIR / runfiles.LATEST)
        log.info("resumed at epoch %d", trainer.epoch)
    try:
        trainer.fit()
    except KeyboardInterrupt:
        raise TrainingInterrupted(run_dir) from None
    return run_dir


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) during training; ``run_dir`` holds the checkpoints to ``--resume`` from."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


__all__ = ["train", "check_run", "resolve_config", "TrainingInterrupted"]
