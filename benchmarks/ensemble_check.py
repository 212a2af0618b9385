"""What an ensemble of finished runs (``lmisa predict -m A -m B ...``) scores against its members, side by side.

    python benchmarks/ensemble_check.py RUN RUN [RUN ...] --test DATA_SET --out ensemble.json

Each run predicts the labelled data set ``--test`` alone, then the runs predict it as one ensemble
(:mod:`lmisa.ensemble`: probabilities averaged before the argmax, the first run's post-processing); every
prediction is scored (organ slices and whole volume) and timed. It prints each member's Dice, their mean, the
ensemble's, and the prediction seconds of one member against the ensemble's. ``--test``'s labels are read: on a
target test set this is a measurement made after training, never a choice of the runs (the seeds of one
configuration, as the benchmark trained them). The runs must prepare images alike (the ensemble refuses others).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lmisa.ensemble import load_ensemble
from lmisa.predict import predict_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tta_check import PROTOCOLS, scores  # noqa: E402


def timed_scores(model, data: Path, work: Path, key: str, device: str) -> dict:
    """``scores`` of one model's predictions of ``data`` (lmisa.predict, its own post-processing), with
    ``s_<key>``: the prediction seconds."""
    start = time.perf_counter()
    predict_path(model, data, work / key, device=device, progress=False)
    return {f"s_{key}": time.perf_counter() - start, **scores(work / key, data, work, key)}


def check(runs: list[Path], data: Path, work: Path, device: str = "cpu") -> dict:
    """Every member alone (``member<i>``) and the ensemble (``ensemble``), on ``data``."""
    for run in runs:
        if not (run / "DONE").exists():
            raise SystemExit(f"error: {run}: not a finished run (no DONE)")
    ensemble = load_ensemble(runs, "best", device=device)  # refuses runs that prepare images differently, first
    row: dict = {"runs": [str(r) for r in runs], "test": str(data)}
    for i, member in enumerate(ensemble.members):
        row.update(timed_scores(member, data, work, f"member{i}", device))
    row.update(timed_scores(ensemble, data, work, "ensemble", device))
    return row


def summary_lines(row: dict) -> list[str]:
    n = len(row["runs"])
    lines = []
    for protocol in PROTOCOLS:
        members = [row[f"dice_member{i}_{protocol}"] for i in range(n)]
        ens = row[f"dice_ensemble_{protocol}"]
        lines.append(f"{protocol:12s}: members {', '.join(f'{d:.2f}' for d in members)} (mean {statistics.mean(members):.2f}, "
                     f"best {max(members):.2f}); ensemble {ens:.2f} ({ens - statistics.mean(members):+.2f} on the mean)")
    one = statistics.mean(row[f"s_member{i}"] for i in range(n))
    lines.append(f"prediction: {one:.1f} s per member, {row['s_ensemble']:.1f} s for the ensemble of {n}")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--test", type=Path, required=True, help="a labelled data set to predict and score")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if len(args.runs) < 2:
        raise SystemExit("error: an ensemble needs at least two runs")
    with tempfile.TemporaryDirectory() as tmp:
        row = check(args.runs, args.test, Path(tmp), args.device)
    for line in summary_lines(row):
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
