"""Reverse validation: a label-free score for a finished run's predictions on the target (docs/prereg/).

    python benchmarks/reverse_validation.py RUN [RUN ...] --source SOURCE_DATA_SET --target TARGET_DATA_SET \\
        --config CONFIG --seed 0 --work DIR --out reverse.json --parallel 2

A run that adapts well predicts good label maps on the target's training images. To score those maps without a
target label, train a *reverse* model on them (the target's training images with the run's maps as labels,
``source_only``, the same ``--config`` and ``--seed`` for every run compared) and score it on the labelled source
cases it never saw (``--source``: all its cases, labels read). Better maps give a better reverse model
(Zhong et al., ECML PKDD 2010; Ganin et al., JMLR 2016, used it to choose DANN's settings). The reverse model
crosses the domain gap the other way without adaptation, so the score is lower and noisier than the run's own;
compare runs only against each other, with the same reverse config and seed.

No target label is read: the reverse data set links the target's ``imagesTr`` and the run's maps, never the
target's ``labelsTr``. Each run's work (``WORK/<i>_<run name>``, ``<i>`` its place on the command line: maps,
reverse data set, reverse run, predictions) is kept, and a finished step is not redone: maps already written are
skipped by ``lmisa predict``, a reverse run with ``DONE`` is not retrained (its source predictions and scores are
made afresh).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from abdomen import threads_per_process  # noqa: E402
from tta_check import scores  # noqa: E402


def lmisa(args: list[str], log: Path, threads: int) -> None:
    """Run an ``lmisa`` command with ``threads`` torch threads; its output goes to ``log``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with log.open("a") as out:
        done = subprocess.run([sys.executable, "-m", "lmisa", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        raise SystemExit(f"error: lmisa {args[0]} failed (exit {done.returncode}); see {log}")


def reverse_data_set(target: Path, maps: Path, into: Path) -> Path:
    """A data set of the target's training images labelled with ``maps`` (links; the target's labels are not used)."""
    if into.exists():
        shutil.rmtree(into)
    (into / "imagesTr").mkdir(parents=True)
    (into / "labelsTr").mkdir()
    for image in sorted((target / "imagesTr").glob("*_0000.nii.gz")):
        case = image.name.removesuffix("_0000.nii.gz")
        label = maps / f"{case}.nii.gz"
        if not label.exists():
            raise SystemExit(f"error: {label}: no map for target case {case}")
        (into / "imagesTr" / image.name).symlink_to(image.resolve())
        (into / "labelsTr" / label.name).symlink_to(label.resolve())
    shutil.copy(target / "dataset.json", into / "dataset.json")
    return into


def reverse_score(run: Path, work: Path, source: Path, target: Path, config: Path, seed: int, threads: int) -> dict:
    """Maps of ``run`` on the target, the reverse model trained on them, and its Dice on the source's cases."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    start = time.perf_counter()
    maps = work / "maps"
    lmisa(["predict", "-m", str(run), "-i", str(target / "imagesTr"), "-o", str(maps), "--device", "cpu"], log, threads)
    data = reverse_data_set(target, maps, work / "reverse_data")
    reverse = work / "reverse"
    if not (reverse / "DONE").exists():
        resume = ["--resume"] if (reverse / "checkpoints" / "latest.pt").exists() else ["--variant", "source_only"]
        lmisa(["train", "-s", str(data), "-c", str(config), "--seed", str(seed), "-o", str(reverse), "--device", "cpu",
               *resume], log, threads)
    pred = work / "source_pred"
    for derived in (pred, *work.glob("eval_reverse_*")):  # scored afresh: the reverse run may have changed
        shutil.rmtree(derived, ignore_errors=True)
    lmisa(["predict", "-m", str(reverse), "-i", str(source / "imagesTr"), "-o", str(pred), "--device", "cpu"], log, threads)
    row = {"run": str(run), "reverse_run": str(reverse), "seed": seed, "config": str(config),
           "source": str(source), "target": str(target)}
    row.update(scores(pred, source, work, "reverse"))
    row["seconds"] = time.perf_counter() - start
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished runs (lmisa train folders)")
    ap.add_argument("--source", type=Path, required=True, help="labelled source data set the reverse models are scored on")
    ap.add_argument("--target", type=Path, required=True, help="target training data set (images only are read)")
    ap.add_argument("--config", type=Path, required=True, help="the reverse models' config (the same for all)")
    ap.add_argument("--seed", type=int, default=0, help="the reverse models' seed (the same for all)")
    ap.add_argument("--work", type=Path, required=True, help="maps, reverse runs and predictions are kept here")
    ap.add_argument("--out", type=Path, required=True, help="the JSON list of rows written here")
    ap.add_argument("--parallel", type=int, default=1)
    args = ap.parse_args(argv)
    for run in args.runs:
        if not (run / "DONE").exists():
            raise SystemExit(f"error: {run}: not a finished run (no DONE)")
    if (args.target / "labelsTr").resolve() == (args.source / "labelsTr").resolve():
        raise SystemExit(f"error: {args.target}: the target is the source")
    threads = threads_per_process(max(1, args.parallel))
    jobs = [(run, args.work / f"{i}_{run.name}") for i, run in enumerate(args.runs)]
    with ThreadPoolExecutor(max(1, args.parallel)) as pool:
        rows = list(pool.map(lambda job: reverse_score(job[0], job[1], args.source, args.target, args.config,
                                                       args.seed, threads), jobs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    for r in rows:
        print(f"{r['run']}: reverse Dice on the source, organ slices {r['dice_reverse_organ_slices']:.2f}, "
              f"volume {r['dice_reverse_volume']:.2f} ({r['seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
