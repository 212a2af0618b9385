"""One round of self-training from a finished run, as one resumable step (``lmisa self-train``).

Why: a run's own post-processed maps of the target's training images, used as a segmentation term on the target
(``data.pseudo_labels``), gained on the abdominal target test in every run measured (docs/RESULTS.md 2w-2ai; no
target label is read), though not on the built-in phantoms (2ak): an option, not a default. By hand that is three
commands whose outputs must line up: predict the target's training images with the run, then train again on the
same data and config with those maps. Here it is one, and running it again after an interruption continues where
it stopped: maps already written are kept, a started run resumes.

Several finished runs of one source and target (seeds, say) may label the images together: their ensemble's maps
(``lmisa predict -m A -m B``), while the new run takes the first run's config and seed.

Layout::

    OUT/self_train.json   the base run(s), variant and maps this folder was made from (other bases are refused)
    OUT/pseudo_labels/    the base run's (or ensemble's) maps of the target training images (best checkpoints)
    OUT/run/              the self-trained run: the base run's data, grid and schedule (:func:`base_settings`)
                          under ``variant`` (default ``source_only``, the recipe measured) with
                          ``data.pseudo_labels`` set; predict with ``-m OUT/run``

Example (a finished run in ``runs/ct2mr``)::

    from lmisa.self_training import self_train
    run = self_train("runs/ct2mr", "runs/ct2mr_st")   # runs/ct2mr_st/run
    run = self_train(["runs/seed0", "runs/seed1", "runs/seed2"], "runs/ens_st")   # the three seeds' maps
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from lmisa.errors import LmisaError
from lmisa.io import read_json_object, write_text_atomic

if TYPE_CHECKING:
    from lmisa.config import Config
    from lmisa.ensemble import Ensemble
    from lmisa.predict import LoadedModel

MAPS = "pseudo_labels"
RUN = "run"
RECORD = "self_train.json"
DEFAULT_VARIANT = "source_only"

__all__ = ["self_train", "base_settings", "base_run_data", "MAPS", "RUN", "RECORD"]


def base_run_data(run_dir: str | Path) -> tuple[Path, Path]:
    """The source and target data sets a finished run trained on (its ``split.json``). Raises LmisaError naming
    the file when the run is unfinished, had no target, its split.json is damaged, or its data sets are gone."""
    from lmisa.training import run as runfiles

    run_dir = Path(run_dir)
    split_file = run_dir / runfiles.SPLIT
    if not split_file.is_file():
        raise LmisaError(f"{run_dir}: not a run folder (no {runfiles.SPLIT}); pass a folder made by `lmisa train`")
    if not (run_dir / runfiles.DONE).is_file():
        raise LmisaError(f"{run_dir}: the run has not finished (no {runfiles.DONE}); finish it with "
                         f"`lmisa train ... --out {run_dir} --resume` first")
    split = runfiles.read_run_split(run_dir)
    if not split.get("target"):
        raise LmisaError(f"{split_file}: the run trained without a target data set; there is nothing to self-train on")
    if not isinstance(split.get("source"), str) or not isinstance(split["target"], str):
        raise LmisaError(f'{split_file}: "source" and "target" must be the paths of the data sets the run trained on')
    source, target = Path(split["source"]), Path(split["target"])
    for path in (source, target):
        if not path.is_dir():
            raise LmisaError(f"{path}: data set not found (recorded in {split_file}); restore it to self-train")
    return source, target


def self_train(
    run_dir: str | Path | Sequence[str | Path],
    out: str | Path,
    variant: str = DEFAULT_VARIANT,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Label the target's training images with the finished run ``run_dir``, then train ``variant`` on the same
    data and config with those maps as pseudo-labels; return the new run's folder, ``out/run``.

    ``run_dir`` may name several finished runs trained on one source and one target: their ensemble labels the
    images, and the new run takes the first run's config (and so its seed). Running it again with the same
    arguments continues: maps already written are kept, a started run resumes (its own saved config and maps), a
    finished one is returned as is. ``out`` records the base run(s) and variant at the first call, and other bases
    or another variant there are refused from then on (choose another ``out``).
    """
    from lmisa.config import LMISA_VARIANTS
    from lmisa.ensemble import load_ensemble
    from lmisa.training import run as runfiles
    from lmisa.training import train

    allowed = [v for v in LMISA_VARIANTS if v != "supervised"]  # supervised reads the target labels maps replace
    if variant not in allowed:
        raise LmisaError(f"--variant {variant}: self-training trains one of {', '.join(allowed)}")
    runs = [Path(run_dir)] if isinstance(run_dir, (str, Path)) else [Path(r) for r in run_dir]
    if not runs:
        raise LmisaError("no base run given: name at least one finished run of `lmisa train`")
    out = Path(out)
    source, target = _shared_data(runs)
    settings = base_settings(runs[0])
    model = load_ensemble(runs, which="best", device=device or settings.train.device)  # where the new run trains
    maps, new_run = out / MAPS, out / RUN
    _claim(out, runs, variant)  # after every check of the runs: a refused call leaves no OUT behind
    if (new_run / runfiles.DONE).is_file():
        return new_run
    _write_maps(model, target, maps, progress)
    resume = (new_run / runfiles.CKPT_DIR / runfiles.LATEST).is_file()
    return train(
        source, target, out=new_run, config=None if resume else settings,
        variant=None if resume else variant, device=device, resume=resume, progress=progress,
        overrides=None if resume else {"data": {"pseudo_labels": str(maps)}},
    )


def base_settings(run_dir: str | Path) -> Config:
    """The finished run's saved config with what its variant decided undone: the keys its variant switches
    (``lmisa.config.apply_variant``: the critic's and reconstruction's weights, the input, ...) back at their
    defaults, and the settings saved as resolved for its variant (``train.ema_decay``, ``loss.critic_window``) unset,
    so that another variant applied on top trains as that variant would on the same data, grid and schedule."""
    from lmisa.config import Config, apply_variant
    from lmisa.training.run import CONFIG

    saved = Config.load(Path(run_dir) / CONFIG, saved_run=True)
    defaults = _flat(Config().to_dict())
    switched = {k for k, v in _flat(apply_variant(Config(), saved.variant).to_dict()).items()
                if k != "variant" and v != defaults.get(k)}
    settings = _flat(saved.to_dict())
    settings.update({k: defaults[k] for k in switched})
    settings.update({"train.ema_decay": None, "loss.critic_window": None})
    return Config.from_dict(_nested(settings), str(Path(run_dir) / CONFIG))


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`_flat`."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def _shared_data(runs: list[Path]) -> tuple[Path, Path]:
    """The source and target data sets every run trained on; raises LmisaError naming the run that differs, since
    an ensemble's maps of one target are trained beside one source (a run given twice is refused by
    :func:`lmisa.ensemble.load_ensemble`, also before ``out`` is made)."""
    first = base_run_data(runs[0])
    for run_dir in runs[1:]:
        data = base_run_data(run_dir)
        if [p.resolve() for p in data] != [p.resolve() for p in first]:
            raise LmisaError(f"{run_dir}: trained on {data[0]} -> {data[1]}, {runs[0]} on {first[0]} -> {first[1]}; "
                             "the runs that label the target together must share one source and one target")
    return first


def _claim(out: Path, runs: list[Path], variant: str) -> None:
    """Record what ``out`` is made from, or check it was made from the same runs and variant: maps of other runs
    left in ``out`` would otherwise be kept and trained on."""
    record = out / RECORD
    wanted: dict[str, Any] = {"base_run": str(runs[0].resolve()), "variant": variant,
                              "ensemble": [str(r.resolve()) for r in runs] if len(runs) > 1 else None}
    if record.is_file():
        made = read_json_object(record)
        if {k: made.get(k) for k in wanted} != wanted:
            bases = ", ".join(map(str, made["ensemble"])) if isinstance(made.get("ensemble"), list) else made.get("base_run")
            raise LmisaError(f"{record}: this folder self-trains {made.get('variant')} from {bases} (the first run "
                             "gives the config); choose another --out")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LmisaError(f"{out}: exists and is not an empty folder (no {RECORD}); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    made = {k: v for k, v in wanted.items() if v is not None}
    write_text_atomic(record, json.dumps(dict(made, maps=MAPS, run=RUN), indent=2) + "\n")


def _write_maps(model: LoadedModel | Ensemble, target: Path, maps: Path, progress: bool) -> None:
    """The base run's (or the runs' ensemble's) maps of every target training image; those written before are kept."""
    from lmisa.datasets import Domain
    from lmisa.predict import predict_path

    images = Domain.open(target).root / "imagesTr"
    report = predict_path(model, images, maps, progress=progress)
    if report.failed:
        path, reason = report.failed[0]
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        raise LmisaError(f"{path}: no pseudo-label map: {reason}{more}")
