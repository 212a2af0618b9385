"""Self-training decided on a development pair whose target labels may be read: the built-in phantoms.

    python benchmarks/self_training_phantoms.py --out bench_out/st_phantoms            # 5 seeds, both directions
    python benchmarks/self_training_phantoms.py --out bench_out/st_phantoms --directions "CT->MR" --seeds 0 1
    python benchmarks/self_training_phantoms.py --out bench_out/st_phantoms_x6 --schedule 6 --seeds 0   # 2,400 steps

Why: one round of self-training (``lmisa self-train``) gained on the abdominal target test in every run measured,
but each of those gains was read on the benchmark's target labels after training, and no label-free rule has
chosen it (docs/RESULTS.md 2x, 2ag, 2ai). A pair whose target labels are no benchmark's target can choose it
once for every user, as the phantoms chose ``lmisa``'s defaults (RESULTS 5): the decision rule is written
before the runs (docs/prereg/2026-12-07-self-training-phantoms.md) and :func:`decide` applies it.

What it runs, per direction (CT-like -> MR-like, MR-like -> CT-like) and seed: ``lmisa`` on the demo's settings
(``lmisa.demo.DEMO_SETTINGS``: 400 steps, 96 x 96 at 3.5 mm), labelled source anatomies and unlabelled target ones;
then ``lmisa.self_training.self_train`` from it (``source_only`` on its maps of the target training images); both
predict the held-out target anatomies, scored by whole-volume 3D Dice (mean of the 4 organs). Source, target and
test anatomies are disjoint (``lmisa.demo.split_phantom_cases``). Each pair's result is kept in
``OUT/pairs/<direction>_seed<k>.json``; a second call reuses finished runs and pairs, and the table and the rule
cover every pair in ``OUT``, so two processes on different directions or seeds may share one ``OUT`` (the rule's
are seeds 0-4: train other seeds into another ``OUT``). Outcome on 2026-12-07: NOT adopted (RESULTS 2ak).
``--schedule K`` trains both runs of a pair K times as many epochs, the learning rate's steps stretched alike (the
patients' self-training gains came at 7,200 steps, the phantoms' rule at 400); an ``OUT`` keeps the K it was
made with (``OUT/schedule.json``), since a finished run of another length would be reused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

DIRECTIONS = {"CT->MR": ("CT", "MR"), "MR->CT": ("MR", "CT")}
RULE = {"seeds": 5, "min_wins": 4, "min_mean_gain": 1.0}  # per direction: docs/prereg/2026-12-07-self-training-phantoms.md


def slug(direction: str) -> str:
    """``CT->MR`` as a folder name, ``CT2MR``."""
    return direction.replace("->", "2")


def pair_name(direction: str, seed: int) -> str:
    return f"{slug(direction)}_seed{seed}"


def phantom_split(out: Path, cases: int, data_seed: int) -> dict[str, tuple[Path, Path, Path]]:
    """Phantoms written once, then per direction its (labelled source, unlabelled target, labelled test) data sets
    of disjoint anatomies, as links into ``OUT/phantoms``."""
    from lmisa.datasets import link_subset
    from lmisa.demo import split_phantom_cases
    from lmisa.synthetic import write_phantom_datasets

    phantoms = out / "phantoms"
    if not all((phantoms / a / "dataset.json").exists() for a in ("CT", "MR")):
        write_phantom_datasets(phantoms, cases=cases, seed=data_seed, appearances=("CT", "MR"))
    split = split_phantom_cases(cases)
    sets = {}
    for direction, (src, tgt) in DIRECTIONS.items():
        data = out / "data" / slug(direction)
        sets[direction] = (
            link_subset(phantoms / src, data / f"{src}_source", split.source),
            link_subset(phantoms / tgt, data / f"{tgt}_target", split.target, with_labels=False),
            link_subset(phantoms / tgt, data / f"{tgt}_test", split.test),
        )
    return sets


def test_dice(run: Path, test: Path, pred_dir: Path, device: str) -> float:
    """Mean over organs of the whole-volume 3D Dice of ``run`` on ``test`` (its own post-processing)."""
    from lmisa.evaluation import evaluate_folders
    from lmisa.predict import load_run, predict_path

    predict_path(load_run(run, "best", device=device), test, pred_dir, device=device, progress=False)
    if not (pred_dir / "summary.json").exists():
        evaluate_folders(pred_dir, test, progress=False)
    return json.loads((pred_dir / "summary.json").read_text())["mean_over_structures"]["dice"]["mean"]


def schedule_settings(schedule: int) -> dict[str, Any]:
    """The demo's settings (``lmisa.demo.DEMO_SETTINGS``) with ``schedule`` times the epochs and the learning rate's
    steps as far apart in proportion."""
    from lmisa.demo import DEMO_SETTINGS

    train = DEMO_SETTINGS["train"]
    stretched = {"epochs": train["epochs"] * schedule}
    if "lr_decay_every" in train:
        stretched["lr_decay_every"] = train["lr_decay_every"] * schedule
    return {**DEMO_SETTINGS, "train": {**train, **stretched}}


def claim_schedule(out: Path, schedule: int) -> None:
    """Record the schedule ``out`` is made with, or refuse another: its finished runs would be reused as they are."""
    record = out / "schedule.json"
    if record.exists() or (out / "runs").exists():  # a folder from before the record trained the demo's schedule
        made = json.loads(record.read_text())["schedule"] if record.exists() else 1
        if made != schedule:
            raise SystemExit(f"{record}: this folder trains at --schedule {made}; choose another --out")
        return
    from lmisa.io import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(record, json.dumps({"schedule": schedule}) + "\n")  # two processes may share one OUT


def run_pair(out: Path, direction: str, seed: int, sets: tuple[Path, Path, Path], device: str,
             schedule: int = 1) -> dict[str, Any]:
    """The base ``lmisa`` run and its self-trained run for one direction and seed, scored on the test anatomies."""
    from lmisa.self_training import self_train
    from lmisa.training import train
    from lmisa.training.run import CKPT_DIR, DONE, LATEST

    source, target, test = sets
    name = pair_name(direction, seed)
    base = out / "runs" / name / "lmisa"
    settings = schedule_settings(schedule)
    t0 = time.perf_counter()
    if not (base / DONE).exists():
        resume = (base / CKPT_DIR / LATEST).exists()
        seeded = {**settings, "train": {**settings["train"], "seed": seed}}
        train(source, target, out=base, variant=None if resume else "lmisa", device=device, resume=resume,
              progress=False, overrides=None if resume else seeded)
    self_trained = self_train(base, out / "runs" / name / "self_train", device=device, progress=False)
    return {
        "direction": direction, "seed": seed,
        "steps": settings["train"]["epochs"] * settings["train"]["steps_per_epoch"],
        "base": test_dice(base, test, out / "predictions" / name / "lmisa", device),
        "self_trained": test_dice(self_trained, test, out / "predictions" / name / "self_train", device),
        "seconds": time.perf_counter() - t0,
    }


def decide(pairs: list[dict[str, Any]], min_wins: int = RULE["min_wins"],
           min_mean_gain: float = RULE["min_mean_gain"]) -> dict[str, dict[str, Any]]:
    """Per direction: seeds, wins (self-trained above its base), mean gain, and ``pass`` under the rule; the
    rule adopts self-training only when every direction passes."""
    out = {}
    for direction in DIRECTIONS:
        gains = [p["self_trained"] - p["base"] for p in pairs if p["direction"] == direction]
        if not gains:
            continue
        wins, mean = sum(g > 0 for g in gains), statistics.fmean(gains)
        out[direction] = {"seeds": len(gains), "wins": wins, "mean_gain": mean,
                          "pass": wins >= min_wins and mean >= min_mean_gain}
    return out


def print_table(pairs: list[dict[str, Any]], verdict: dict[str, dict[str, Any]]) -> None:
    print("direction  seed   lmisa  + self-training   gain")
    for p in sorted(pairs, key=lambda p: (p["direction"], p["seed"])):
        print(f"{p['direction']:<9} {p['seed']:>5} {p['base']:>7.1f} {p['self_trained']:>16.1f} "
              f"{p['self_trained'] - p['base']:>+6.1f}")
    for direction, v in verdict.items():
        print(f"{direction}: {v['wins']} of {v['seeds']} seeds gained, mean {v['mean_gain']:+.2f} "
              f"-> {'passes' if v['pass'] else 'fails'} (needs {RULE['min_wins']} wins and {RULE['min_mean_gain']:+.1f})")
    print(f"rule: {outcome(verdict)}")


def outcome(verdict: dict[str, dict[str, Any]]) -> str:
    """ADOPTED, NOT adopted, or incomplete until every direction has the rule's seeds."""
    if len(verdict) < len(DIRECTIONS) or any(v["seeds"] < RULE["seeds"] for v in verdict.values()):
        return f"incomplete (each direction needs {RULE['seeds']} seeds)"
    return "ADOPTED" if all(v["pass"] for v in verdict.values()) else "NOT adopted"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench_out/st_phantoms"))
    ap.add_argument("--directions", nargs="+", choices=list(DIRECTIONS), default=list(DIRECTIONS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--cases", type=int, default=32, help="anatomies: 3/8 source, 3/8 target, 1/4 test")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the phantom anatomies")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the usable cores)")
    ap.add_argument("--schedule", type=int, default=1, choices=range(1, 101), metavar="K",
                    help="times the demo's epochs for both runs of a pair (the learning rate's steps stretched alike)")
    args = ap.parse_args(argv)

    import torch

    from lmisa.cores import usable_cores

    torch.set_num_threads(args.threads or usable_cores())
    os.environ.setdefault("LMISA_CACHE", str(args.out / "cache"))
    claim_schedule(args.out, args.schedule)
    sets = phantom_split(args.out, args.cases, args.data_seed)
    (args.out / "pairs").mkdir(parents=True, exist_ok=True)
    for direction in args.directions:
        for seed in args.seeds:
            done = args.out / "pairs" / f"{pair_name(direction, seed)}.json"
            if not done.exists():
                result = run_pair(args.out, direction, seed, sets[direction], args.device, args.schedule)
                done.write_text(json.dumps(result, indent=2) + "\n")
                print(f"{direction} seed {seed}: {result['base']:.1f} -> {result['self_trained']:.1f} "
                      f"({result['seconds']:.0f} s)", flush=True)
    pairs = [json.loads(p.read_text()) for p in sorted((args.out / "pairs").glob("*.json"))]
    verdict = decide(pairs)
    print_table(pairs, verdict)
    record = {"pairs": pairs, "verdict": verdict, "rule": RULE, "outcome": outcome(verdict)}
    (args.out / "results.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
