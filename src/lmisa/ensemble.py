"""Several trained runs predicting as one: their class probabilities averaged before the argmax.

Why: nnU-Net users predict with an ensemble of their folds, and runs that differ only by seed disagree most where
each is unsure (a spurious blob, an organ's border); averaging their probabilities keeps what they agree on.
An ensemble is a prediction-time choice and reads no label: any runs that prepare images alike may be combined,
for example the seeds of one configuration (``lmisa predict -m runs/s0 -m runs/s1 -m runs/s2``).

The members must prepare images identically (the same plans but the organ extents, and MLNGM computed the same
way), so their probabilities share one frame and are averaged there, batch by batch, with no extra memory on the
image's grid. Each member keeps its own precision and, under test-time augmentation, its own views.
Post-processing and test-time augmentation follow the first run's settings; the extent cap uses, per organ, the
longest extent any member's training labels held (the cap the union of their training cases would give).

Example:
    >>> from lmisa.ensemble import load_ensemble
    >>> from lmisa.predict import predict_path
    >>> ensemble = load_ensemble(["runs/seed0", "runs/seed1", "runs/seed2"])     # doctest: +SKIP
    >>> predict_path(ensemble, "data/MR/imagesTs", "preds/mr").summary()          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import torch

from lmisa.config import Config
from lmisa.errors import LmisaError
from lmisa.predict import LoadedModel, load_run
from lmisa.preprocess import Plans

__all__ = ["Ensemble", "load_ensemble", "preparation"]


def preparation(model: LoadedModel) -> dict:
    """What decides a run's network input from an image: its plans but the organ extents (a cap after the
    argmax, not part of the input) and the voxel axes (compared apart by :class:`Ensemble`: older runs lack them),
    and whether MLNGM is computed on the frame (online) or cached."""
    plans = asdict(model.plans)
    plans.pop("organ_extent_mm")
    plans.pop("axis_codes")
    return {**plans, "online_mlngm": model.online_mlngm}


@dataclass
class Ensemble:
    """Trained runs whose probabilities :func:`lmisa.predict.predict_volume` averages; built by
    :func:`load_ensemble`, which checks that they prepare images identically."""

    members: list[LoadedModel]

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise LmisaError(f"an ensemble needs at least two runs, got {len(self.members)}")
        axes = {m.plans.axis_codes: m for m in self.members if m.plans.axis_codes is not None}
        if len(axes) > 1:
            (a, ma), (b, mb) = list(axes.items())[:2]
            raise LmisaError(f"{_where(mb)}: trained on images in voxel axes {b}, {_where(ma)} on {a}; an ensemble "
                             "needs runs trained in one orientation")
        first = preparation(self.members[0])
        for m in self.members[1:]:
            other = preparation(m)
            diff = [f"{k} {other[k]!r} against {first[k]!r}" for k in first if other.get(k) != first[k]]
            if diff:
                raise LmisaError(f"{_where(m)}: prepares images unlike {_where(self.members[0])} ({'; '.join(diff)}); "
                                 "an ensemble needs runs with one preparation")

    @property
    def config(self) -> Config:
        """The first run's configuration: its post-processing and test-time augmentation apply."""
        return self.members[0].config

    @property
    def plans(self) -> Plans:
        """The shared plans, with each organ's longest training extent over all members and the voxel axes of
        those that recorded theirs (runs from before the record trained as their images were stored)."""
        extents: dict[str, float] = {}
        for m in self.members:
            for organ, mm in m.plans.organ_extent_mm.items():
                extents[organ] = max(mm, extents.get(organ, 0.0))
        has_all = all(m.plans.organ_extent_mm for m in self.members)
        axes = next((m.plans.axis_codes for m in self.members if m.plans.axis_codes is not None), None)
        return replace(self.members[0].plans, organ_extent_mm=extents if has_all else {}, axis_codes=axes)

    @property
    def checkpoint(self) -> Path | None:
        return self.members[0].checkpoint

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    @property
    def online_mlngm(self) -> bool:
        return self.members[0].online_mlngm

    @property
    def label_names(self) -> list[str]:
        return self.members[0].label_names


def _where(model: LoadedModel) -> str:
    """The run folder (or checkpoint file) a member was loaded from, for error messages."""
    if model.checkpoint is None:
        return "a run"
    from lmisa.training.run import CKPT_DIR

    in_run = model.checkpoint.parent.name == CKPT_DIR
    return str(model.checkpoint.parent.parent if in_run else model.checkpoint)


def load_ensemble(
    runs: Sequence[str | Path], which: str = "best", device: str | torch.device = "auto"
) -> LoadedModel | Ensemble:
    """One run: :func:`lmisa.predict.load_run`. Several: an :class:`Ensemble` of them, each loaded as
    ``load_run`` does, on one device. Raises LmisaError naming the run when one will not load, when a run is
    given twice, or when a run prepares images unlike the first."""
    if not runs:
        raise LmisaError("no run given: name at least one run folder")
    from lmisa.training.run import CKPT_DIR

    paths = [Path(r) for r in runs]
    seen: dict[Path, Path] = {}
    for p in paths:  # a run folder and its own checkpoint file are the same member
        key = (p / CKPT_DIR / f"{which}.pt" if p.is_dir() else p).resolve()
        if key in seen:
            raise LmisaError(f"{p}: given twice (as {seen[key]}); an ensemble's runs must differ")
        seen[key] = p
    members = [load_run(p, which=which, device=device) for p in paths]
    return members[0] if len(members) == 1 else Ensemble(members)
