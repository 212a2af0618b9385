"""Real-data benchmark: abdominal CT <-> MR, both directions, LMISA with its ablations and bounds.

    python benchmarks/abdomen.py --quick                       # CPU, < 30 min: source_only vs lmisa
    python benchmarks/abdomen.py --device cuda --parallel 26   # the full table (one GPU: about 8 min under MPS)
    python benchmarks/abdomen.py --test-target OTHER_DATASET   # evaluate finished runs elsewhere

Phases (``--phase``): ``train`` (every run of the table; finished runs are kept unless ``--force``),
``evaluate`` (predict the test target with ``lmisa.predict`` and score it with ``lmisa.evaluation``,
whole volume and "organ slices"), ``all`` (both). Runs go into OUT/runs/<direction>/<variant>/seed<k>,
predictions into OUT/predictions/..., the table into OUT/results.{json,md} (and docs/ with
``--write-docs``). The main variants run at every seed of ``--seeds``, the ablations and peers at the
first ``--ablation-seeds`` (default 1). Beside Dice and ASSD the table says where the errors are
(missed voxels, one organ taken for another, false positives beyond the organ's axial extent).

Honesty: target labels are read only by the ``evaluate`` phase (test cases training never saw) and by
the ``supervised`` bound. Every setting below was fixed before looking at any target result; model
selection uses the held-out SOURCE cases (lowest source validation loss).

The default split divides the shared data by case with a fixed seed (never by slice): 25% of each
modality's cases are test cases, the rest train (of which 20% are held out as source validation).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lmisa.cores import usable_cores

REPO = Path(__file__).resolve().parents[1]
ABDOMEN = Path(os.environ.get("LMISA_ABDOMEN", REPO.parent / "shared" / "data" / "abdomen"))
ORGANS = ("liver", "right_kidney", "left_kidney", "spleen")
MAIN_VARIANTS = ("source_only", "lmisa", "supervised")
ABLATIONS = ("lmisa_paper", "no_mlngm", "no_recon", "no_shape")

# Settings shared by every variant; fixed before any target result was seen. The in-plane spacing
# and frame (2.5 mm, 160 x 160 = 400 mm field of view, both directions) and the schedule (2,400
# steps of 8 + 8 slices, RESULTS.md sections 2 and 2j; 1,000 steps of 16 + 16 before) are compute
# choices: the whole table must train in minutes on one GPU (26 runs at once: about 8 min on an H200
# under CUDA MPS by an estimate from 22 runs in 7, benchmarks/run_on_gpu.sh). = benchmarks/configs/abdomen_gpu_long_25mm.yaml.
FULL = {
    "data": {"spacing": [2.5, 2.5], "size": [160, 160]},
    "train": {"batch_size": 8, "epochs": 24, "steps_per_epoch": 100, "lr_decay_every": 10, "val_batches": 4},
}
QUICK = {  # 2-core CPU, < 30 min for source_only + lmisa in both directions
    "data": {"spacing": [4.0, 4.0], "size": [96, 96]},
    "train": {"batch_size": 8, "epochs": 10, "steps_per_epoch": 60, "lr_decay_every": 4, "val_batches": 4},
}
PUBLISHED = {  # SIFA (Chen et al., IEEE TMI 2020), mean Dice % over the four organs, standard split
    "supervised on the target": {"MR->CT": 88.7, "CT->MR": 87.3},
    "no adaptation": {"MR->CT": 58.2, "CT->MR": 57.7},
    "CycleGAN": {"MR->CT": 79.9, "CT->MR": 83.1},
    "SIFA": {"MR->CT": 83.7, "CT->MR": 85.4},
}


@dataclass
class Direction:
    name: str  # "CT->MR"
    train_source: Path
    train_target: Path
    test_target: Path

    @property
    def slug(self) -> str:
        return self.name.replace("->", "2").replace(" ", "_")


# ----------------------------------------------------------------------------- data split


def split_dataset(src: Path, out: Path, test_fraction: float, seed: int, parts: tuple[str, str] = ("train", "test"),
                  second_labelled: bool = True) -> tuple[Path, Path]:
    """Two nnU-Net folders (``<src>_<parts[0]>``, ``<src>_<parts[1]>``) of links to ``src``'s cases, split by case
    with ``seed``; the second holds ``test_fraction`` of them (at least one), without labels unless
    ``second_labelled``."""
    import random

    from lmisa.datasets import Domain, link_subset

    names = sorted(c.name for c in Domain.open(src).cases("train"))
    shuffled = names[:]
    random.Random(seed).shuffle(shuffled)
    n_test = max(1, round(len(names) * test_fraction))
    if n_test >= len(names):
        raise SystemExit(f"error: {src}: {len(names)} case(s) cannot give {test_fraction:g} of them to "
                         f"{src.name}_{parts[1]} and keep any for {src.name}_{parts[0]}")
    train = link_subset(src, out / f"{src.name}_{parts[0]}", sorted(shuffled[n_test:]))
    test = link_subset(src, out / f"{src.name}_{parts[1]}", sorted(shuffled[:n_test]), with_labels=second_labelled)
    return train, test


def hold_out_target(direction: Direction, out: Path, fraction: float, seed: int) -> Direction:
    """``direction`` training on ``<target>_fit`` only: ``fraction`` of the target's training cases go to
    ``<target>_held`` (images only, no label linked), cases no run of the benchmark trains on, for label-free
    measures that no model has fitted (``label_free.py --held-out``)."""
    fit, _ = split_dataset(direction.train_target, out, fraction, seed, parts=("fit", "held"), second_labelled=False)
    return Direction(direction.name, direction.train_source, fit, direction.test_target)


def default_directions(out: Path, seed: int) -> list[Direction]:
    data = out / "data"
    if not (ABDOMEN / "CT_BTCV" / "dataset.json").exists() and (data / "CT_BTCV_train" / "dataset.json").exists():
        # a copy of the split made elsewhere (benchmarks/compact_data.py): train phase only
        ct, mr = data / "CT_BTCV", data / "MR_CHAOS_T2"
        return [
            Direction("CT->MR", Path(f"{ct}_train"), Path(f"{mr}_train"), Path(f"{mr}_test")),
            Direction("MR->CT", Path(f"{mr}_train"), Path(f"{ct}_train"), Path(f"{ct}_test")),
        ]
    if not (ABDOMEN / "CT_BTCV" / "dataset.json").exists():
        sys.exit(f"error: {ABDOMEN}: the abdominal data is not there (set LMISA_ABDOMEN or pass --train-source ...)")
    ct_train, ct_test = split_dataset(ABDOMEN / "CT_BTCV", out / "data", 0.25, seed)
    mr_train, mr_test = split_dataset(ABDOMEN / "MR_CHAOS_T2", out / "data", 0.25, seed)
    return [Direction("CT->MR", ct_train, mr_train, mr_test), Direction("MR->CT", mr_train, ct_train, ct_test)]


# ----------------------------------------------------------------------------- training


@dataclass
class Job:
    direction: Direction
    variant: str
    seed: int
    run_dir: Path

    def command(self, config: Path, device: str) -> list[str]:
        return [
            sys.executable, "-m", "lmisa", "train", "--source", str(self.direction.train_source),
            "--target", str(self.direction.train_target), "--variant", self.variant, "--seed", str(self.seed),
            "--config", str(config), "--out", str(self.run_dir), "--device", device,
        ]


# the costliest runs start first when several train at once
COST_ORDER = ("sifa", "cyclegan_seg", "lmisa", "lmisa_paper", "no_recon", "no_mlngm", "no_shape", "adaoutput",
              "supervised", "source_only")


def plan_jobs(directions: list[Direction], variants: list[str], seeds: list[int], out: Path,
              ablation_seeds: int = 1) -> list[Job]:
    """Every run: the main variants at every seed, the others at the first ``ablation_seeds`` seeds."""
    jobs = []
    for d in directions:
        for v in variants:
            for s in seeds if v in MAIN_VARIANTS else seeds[:ablation_seeds]:
                jobs.append(Job(d, v, s, out / "runs" / d.slug / v / f"seed{s}"))
    rank = {v: i for i, v in enumerate(COST_ORDER)}
    return sorted(jobs, key=lambda j: (rank.get(j.variant, len(rank)), j.seed))


def warm_caches(directions: list[Direction], settings: dict[str, Any], variants: list[str]) -> None:
    """Build every preprocessing cache once, before runs start in parallel."""
    from lmisa.config import apply_variant
    from lmisa.training import resolve_config
    from lmisa.training.data import prepare_training_data

    # one representative per distinct cache: MLNGM, raw intensities, target labels (supervised)
    kinds = {"no_mlngm": "no_mlngm", "supervised": "supervised"}
    wanted = sorted({kinds.get(v, "lmisa") for v in variants})
    for d in directions:
        for variant in wanted:
            cfg = apply_variant(resolve_config(overrides=settings), variant)
            prepare_training_data(cfg, d.train_source, d.train_target, progress=True)


def default_parallel(quick: bool, device: str, n_jobs: int) -> int:
    """Runs trained at once when ``--parallel`` is not given: ``--quick`` on a CPU puts one per core (up to its
    runs), since these small networks scale poorly over threads (2 cores: two one-thread runs made 1.14x the
    steps per second of one two-thread run, bench_cpu_parallel.py, docs/RESULTS.md 3); otherwise one."""
    if quick and device.split(":")[0] == "cpu":
        return max(1, min(n_jobs, usable_cores()))
    return 1


def threads_per_process(parallel: int) -> int:
    """Torch threads for each of ``parallel`` processes sharing this process's cores."""
    return max(1, usable_cores() // parallel)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_jobs(jobs: list[Job], config: Path, device: str, parallel: int, force: bool,
             time_limit: float | None = None) -> None:
    """Train the unfinished jobs, ``parallel`` at a time. After ``time_limit`` seconds the running ones
    are stopped (they keep their checkpoints: the next call resumes them) and no new one starts."""
    deadline = time.time() + time_limit if time_limit else float("inf")
    todo = []
    for job in jobs:
        if (job.run_dir / "DONE").exists() and not force:
            continue
        if job.run_dir.exists():
            if force or not (job.run_dir / "checkpoints" / "latest.pt").exists():
                stale = job.run_dir.with_name(f"{job.run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
                job.run_dir.rename(stale)  # never delete a run: keep it aside
        todo.append(job)
    print(f"training: {len(todo)} run(s) to do, {len(jobs) - len(todo)} finished already; {parallel} at a time")
    running: list[tuple[Job, subprocess.Popen, float]] = []
    failed = []
    while todo or running:
        if time.time() > deadline:
            for job, proc, _ in running:
                proc.terminate()
                print(f"  {job.direction.name:7s} {job.variant:12s} seed {job.seed}: stopped at the time limit", flush=True)
            for _, proc, _ in running:
                proc.wait()
            print(f"time limit: {len(running)} run(s) stopped, {len(todo)} not started; run again to resume")
            return
        while todo and len(running) < parallel:
            job = todo.pop(0)
            cmd = job.command(config, device)
            if (job.run_dir / "checkpoints" / "latest.pt").exists():
                i = cmd.index("--variant")  # a resumed run takes its variant from its saved config
                cmd = cmd[:i] + cmd[i + 2:] + ["--resume"]
            job.run_dir.parent.mkdir(parents=True, exist_ok=True)
            log = open(job.run_dir.parent / f"{job.run_dir.name}.stdout", "a")
            env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_process(parallel)))
            running.append((job, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), time.time()))
        time.sleep(2)
        for item in running[:]:
            job, proc, t0 = item
            if proc.poll() is not None:
                running.remove(item)
                status = "ok" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
                if proc.returncode:
                    failed.append(job)
                print(f"  {job.direction.name:7s} {job.variant:12s} seed {job.seed}: {status} in {time.time() - t0:.0f} s", flush=True)
    if failed:
        print(f"{len(failed)} run(s) failed; see the .stdout files next to their run folders")


# ----------------------------------------------------------------------------- evaluation


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def evaluate_job(job: Job, test_target: Path, out: Path, device: str, force: bool) -> list[dict[str, Any]]:
    from lmisa.evaluation import evaluate_folders
    from lmisa.nets import count_inference_parameters
    from lmisa.predict import PREDICTION_VERSION, load_run, predict_path

    tag = test_target.name
    pred_dir = out / "predictions" / job.direction.slug / tag / job.variant / f"seed{job.seed}"
    best = job.run_dir / "checkpoints" / "best.pt"
    stamp = f"{best.stat().st_mtime_ns} {best.stat().st_size} prediction v{PREDICTION_VERSION}"
    stamp_file = pred_dir / "checkpoint.txt"
    if pred_dir.exists() and (force or not stamp_file.exists() or stamp_file.read_text() != stamp):
        shutil.rmtree(pred_dir)  # predictions of another checkpoint (retrained or finished since)
    pred_dir.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(stamp)
    model = load_run(job.run_dir, "best", device=device)
    predict_path(model, test_target, pred_dir, device=device, progress=False)
    history = _history(job.run_dir)
    rows = []
    for protocol in ("volume", "organ_slices"):
        eval_dir = pred_dir / f"eval_{protocol}"
        summary_path = eval_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        # an evaluation written before the error counts existed is redone (seconds; the predictions stay)
        if "errors" not in summary:
            eval_dir.mkdir(parents=True, exist_ok=True)
            summary = evaluate_folders(pred_dir, test_target, out_dir=eval_dir, protocol=protocol, progress=False,
                                       overwrite=True).to_dict()
        per = summary["per_structure"]
        rows.append({
            "direction": job.direction.name,
            "protocol": protocol,
            "variant": job.variant,
            "seed": job.seed,
            "test_target": str(test_target),
            "dice_mean": summary["mean_over_structures"]["dice"]["mean"],
            "dice": {o: per[o]["dice"]["mean"] for o in ORGANS if o in per},
            "assd_vox_mean": summary["mean_over_structures"]["assd_vox"]["mean"],
            "assd_mm_mean": summary["mean_over_structures"]["assd_mm"]["mean"],
            "params": count_inference_parameters(model.net),
            "params_train": _training_params(job.run_dir),
            "peak_mem_mb": max((float(r.get("peak_mem_mb", 0) or 0) for r in history), default=None),
            "wall_s": float(history[-1]["wall_s"]) if history else None,
            "device": _run_device(job.run_dir),
            "epochs": len(history),
            "errors_pct": error_shares(summary),
            "dice_cases": case_dice(eval_dir / "metrics_per_case.csv"),
        })
    return rows


def case_dice(per_case_csv: Path) -> dict[str, float]:
    """Mean Dice over the organs of each test case (``metrics_per_case.csv``); empty when it is missing. On a
    six-case test set one case can move the mean by points (docs/RESULTS.md 2z: sabs_07's 10 mL kidneys)."""
    per: dict[str, list[float]] = {}
    for r in _csv_rows(per_case_csv):
        if r["structure"] in ORGANS and r["dice"] not in ("", "nan"):
            per.setdefault(r["case"], []).append(float(r["dice"]))
    return {case: _mean(v) for case, v in per.items()}


ERROR_TITLES = {"missed": "missed", "confused": "another organ", "false_positive": "false positive",
                "beyond_extent": "of which beyond the organ"}


def error_shares(summary: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """Per organ, % of its reference voxels missed, taken for another organ, false positive and beyond
    its extent (lmisa.confusion.error_shares), from a ``summary.json``; None when it has no error counts."""
    from lmisa.confusion import error_shares as shares

    errors = summary.get("errors")
    if not errors:
        return None
    names = errors["classes"][1:]
    beyond = [errors["false_positive_beyond_extent_voxels"][n] for n in names]
    return {o: v for o, v in shares(errors["confusion_voxels"], beyond, names).items() if o in ORGANS}


def evaluate_jobs(jobs: list[Job], test_target: Path | None, out: Path, device: str, force: bool,
                  parallel: int = 1) -> list[dict[str, Any]]:
    """Evaluate every job that has a checkpoint (on its direction's test target unless ``test_target``),
    ``parallel`` at a time in separate processes (prediction on the device, scoring on the CPU)."""
    ready = []
    for job in jobs:
        if not (job.run_dir / "checkpoints" / "best.pt").exists():
            print(f"  skipping {job.run_dir}: no checkpoint")
            continue
        if not (job.run_dir / "DONE").exists():
            print(f"  note: {job.run_dir} did not finish its schedule; evaluating its best checkpoint")
        ready.append(job)
    results: dict[int, list[dict[str, Any]]] = {}
    failed: list[str] = []

    def done(i: int, get_rows: Any) -> None:
        job = ready[i]
        name = f"{job.direction.name} {job.variant} seed {job.seed}"
        try:
            results[i] = get_rows()
        except Exception as exc:  # one failed evaluation must not lose the others' rows
            failed.append(name)
            print(f"  FAILED evaluating {name}: {type(exc).__name__}: {exc}", flush=True)
            return
        print(f"  evaluated {name} ({len(results)}/{len(ready)})", flush=True)

    if parallel <= 1 or len(ready) <= 1:
        for i, job in enumerate(ready):
            done(i, lambda job=job: evaluate_job(job, test_target or job.direction.test_target, out, device, force))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: CUDA cannot be used in a forked child. Works when this file runs as a script.
        workers = min(parallel, len(ready))
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(threads_per_process(workers),)) as pool:
            futures = {pool.submit(evaluate_job, job, test_target or job.direction.test_target, out, device, force): i
                       for i, job in enumerate(ready)}
            for fut in as_completed(futures):
                done(futures[fut], fut.result)
    if failed:
        print(f"{len(failed)} evaluation(s) failed: {', '.join(failed)}")
    return [row for i in sorted(results) for row in results[i]]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header; none when it is missing."""
    import csv

    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _history(run_dir: Path) -> list[dict[str, Any]]:
    return _csv_rows(run_dir / "log.csv")


def _training_params(run_dir: Path) -> int | None:
    """Parameters trained by the run (every network and discriminator): params.json, else train.log."""
    import re

    meta = run_dir / "params.json"
    if meta.exists():
        return int(json.loads(meta.read_text())["training"])
    log = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else ""
    # runs written before params.json existed; a peer's own line comes after the base trainer's
    found = re.search(r"peer \S+: ([\d,]+) parameters in training", log)
    if found:
        return int(found.group(1).replace(",", ""))
    found = re.search(r"generator (\d+) parameters, critic (\d+)", log)
    return int(found.group(1)) + int(found.group(2)) if found else None


def _run_device(run_dir: Path) -> str:
    meta = run_dir / "hardware.txt"
    return meta.read_text().strip() if meta.exists() else "unknown"


# ----------------------------------------------------------------------------- tables


def _fmt(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread over seeds per (direction, protocol, variant)."""
    import statistics

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["direction"], r["protocol"], r["variant"]), []).append(r)
    out = []
    for (d, p, v), rs in groups.items():
        means = [r["dice_mean"] for r in rs if r["dice_mean"] is not None]
        out.append({
            "direction": d, "protocol": p, "variant": v, "seeds": len(rs),
            "dice_mean": _mean(means), "dice_sd": statistics.pstdev(means) if len(means) > 1 else None,
            "dice": {o: _mean([r["dice"].get(o) for r in rs]) for o in ORGANS},
            "assd_vox_mean": _mean([r["assd_vox_mean"] for r in rs]),
            "assd_mm_mean": _mean([r["assd_mm_mean"] for r in rs]),
            "params": rs[0]["params"], "params_train": rs[0].get("params_train"), "peak_mem_mb": _mean([r["peak_mem_mb"] for r in rs]),
            "wall_s": _mean([r["wall_s"] for r in rs]), "device": rs[0]["device"],
            "epochs": "/".join(sorted({str(r.get("epochs")) for r in rs})),
            "errors_pct": {k: _mean([_mean([e[k] for e in r["errors_pct"].values()]) for r in rs if r.get("errors_pct")])
                           for k in ERROR_TITLES},
            "dice_cases": {c: _mean([r.get("dice_cases", {}).get(c) for r in rs])
                           for c in sorted({c for r in rs for c in r.get("dice_cases", {})})},
        })
    order = {v: i for i, v in enumerate(("supervised", "lmisa", "lmisa_paper", "no_mlngm", "no_recon", "no_shape",
                                         "source_only", "sifa", "cyclegan_seg", "adaoutput"))}
    return sorted(out, key=lambda r: (r["direction"], r["protocol"], order.get(r["variant"], 99)))


def markdown_table(agg: list[dict[str, Any]]) -> str:
    lines = []
    for (d, p) in sorted({(r["direction"], r["protocol"]) for r in agg}):
        lines += [
            f"\n**{d}, {'whole volume' if p == 'volume' else 'organ slices (first to last labelled slice)'}**\n",
            "| variant | seeds | epochs | Dice mean (± sd) | liver | R kidney | L kidney | spleen | ASSD vox | ASSD mm | params train | params infer | peak MB | train min |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in agg:
            if (r["direction"], r["protocol"]) != (d, p):
                continue
            sd = f" ± {r['dice_sd']:.1f}" if r["dice_sd"] is not None else ""
            organs = " | ".join(_fmt(r["dice"].get(o)) for o in ORGANS)
            wall = _fmt(r["wall_s"] / 60 if r["wall_s"] else None)
            lines.append(
                f"| {r['variant']} | {r['seeds']} | {r['epochs']} | {_fmt(r['dice_mean'])}{sd} | {organs} | {_fmt(r['assd_vox_mean'], 2)} | "
                f"{_fmt(r['assd_mm_mean'], 2)} | {_count(r.get('params_train'))} | {r['params']:,} | {_fmt(r['peak_mem_mb'], 0)} | {wall} |"
            )
    return "\n".join(lines) + "\n"


def errors_table(agg: list[dict[str, Any]]) -> str:
    """Where the errors are, per variant (organ slices): mean over organs and seeds, % of reference voxels."""
    rows = [r for r in agg if r["protocol"] == "organ_slices" and r["errors_pct"]["missed"] is not None]
    if not rows:
        return ""
    lines = ["\n**Where the errors are** (organ slices; mean over organs and seeds, % of each organ's reference "
             "voxels; false positives: predicted on the reference's background, of which on slices that hold none "
             "of the organ)\n",
             "| direction | variant | " + " | ".join(ERROR_TITLES.values()) + " |",
             "|---|---|" + "---|" * len(ERROR_TITLES)]
    for r in rows:
        lines.append(f"| {r['direction']} | {r['variant']} | " + " | ".join(_fmt(r["errors_pct"][k]) for k in ERROR_TITLES) + " |")
    return "\n".join(lines) + "\n"


def cases_table(agg: list[dict[str, Any]]) -> str:
    """Mean Dice over organs per test case and variant (organ slices, mean over seeds): which cases carry a mean."""
    lines = []
    for d in sorted({r["direction"] for r in agg if r["protocol"] == "organ_slices" and r.get("dice_cases")}, reverse=True):
        rows = [r for r in agg if (r["direction"], r["protocol"]) == (d, "organ_slices") and r.get("dice_cases")]
        cases = sorted({c for r in rows for c in r["dice_cases"]})
        lines += [f"\n**{d}, per test case** (organ slices; mean Dice over the organs, mean over seeds)\n",
                  "| variant | " + " | ".join(cases) + " |", "|---|" + "---|" * len(cases)]
        lines += [f"| {r['variant']} | " + " | ".join(_fmt(r["dice_cases"].get(c)) for c in cases) + " |" for r in rows]
    return "\n".join(lines) + "\n" if lines else ""


def summary_table(agg: list[dict[str, Any]]) -> str:
    """One line per variant: mean Dice (± sd over seeds) per direction and protocol, and the costs."""
    cell = {(r["variant"], r["direction"], r["protocol"]): r for r in agg}
    directions = sorted({r["direction"] for r in agg}, reverse=True)  # MR->CT first, as published
    cols = [(d, p) for d in directions for p in ("organ_slices", "volume")]
    head = " | ".join(f"{d} {'organ slices' if p == 'organ_slices' else 'volume'}" for d, p in cols)
    lines = [f"| variant | seeds | {head} | params train | params infer | train min (per run) |",
             "|---|---|" + "---|" * len(cols) + "---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in agg):
        rs = [cell.get((variant, d, p)) for d, p in cols]
        any_r = next(r for r in rs if r)
        dice = " | ".join("-" if r is None else _fmt(r["dice_mean"]) + (f" ± {r['dice_sd']:.1f}" if r["dice_sd"] is not None else "")
                          for r in rs)
        walls = [r["wall_s"] / 60 for r in rs if r and r["wall_s"]]
        lines.append(f"| {variant} | {any_r['seeds']} | {dice} | {_count(any_r.get('params_train'))} | "
                     f"{_count(any_r['params'])} | {_fmt(max(walls) if walls else None)} |")
    return "\n".join(lines) + "\n"


def plot_cost_vs_dice(agg: list[dict[str, Any]], path: Path, protocol: str = "organ_slices") -> None:
    """Training cost against mean Dice: one point per method and direction (error bar: sd over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = [r for r in agg if r["protocol"] == protocol and r["wall_s"] and r["dice_mean"] is not None]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colours = {"CT->MR": "tab:blue", "MR->CT": "tab:orange"}
    for r in rows:
        x = r["wall_s"] / 60
        ax.errorbar(x, r["dice_mean"], yerr=r["dice_sd"] or 0, fmt="o", color=colours.get(r["direction"], "grey"),
                    capsize=3, markersize=4 + 4 * ((r.get("params_train") or r["params"]) / 1e7) ** 0.5)
        ax.annotate(r["variant"], (x, r["dice_mean"]), textcoords="offset points", xytext=(5, 3), fontsize=7)
    for name, colour in colours.items():
        ax.plot([], [], "o", color=colour, label=name)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    devices = sorted({r["device"] for r in rows})
    ax.set_xlabel(f"training time per run, minutes (log scale)\n{'; '.join(devices)}", fontsize=8)
    ax.set_ylabel(f"mean Dice % ({protocol.replace('_', ' ')})")
    ax.set_title("Cost vs accuracy (marker area ~ parameters in training)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_examples(test_target: Path, predictions: dict[str, Path], path: Path, cases: int = 3) -> None:
    """Per test case, its most labelled slice: image, reference and each variant's prediction (seed 0).

    Written to OUT only, never to docs/: the pictures show patient data under the data sets' licences.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lmisa.io import read_image, read_label

    labels = sorted((test_target / "labelsTr").glob("*.nii.gz"))[:cases]
    fig, axes = plt.subplots(len(labels), 2 + len(predictions), squeeze=False,
                             figsize=(2.2 * (2 + len(predictions)), 2.2 * len(labels)))
    for row, label_path in zip(axes, labels):
        case = label_path.name[: -len(".nii.gz")]
        ref = read_label(label_path).array
        z = int(np.argmax((ref > 0).reshape(ref.shape[0], -1).sum(1)))
        image = read_image(test_target / "imagesTr" / f"{case}_0000.nii.gz").array[z]
        panels = [("image", image, "gray"), ("reference", ref[z], "tab10")]
        for variant, folder in predictions.items():
            found = folder / f"{case}.nii.gz"
            panels.append((variant, read_label(found).array[z] if found.exists() else np.zeros_like(ref[z]), "tab10"))
        for ax, (title, panel, cmap) in zip(row, panels):
            ax.imshow(panel, cmap=cmap, **({} if cmap == "gray" else {"vmin": 0, "vmax": 9, "interpolation": "nearest"}))
            ax.set_title(f"{case} z={z}" if title == "image" else title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def published_table() -> str:
    lines = ["| published (SIFA paper, standard split, 2D) | MR -> CT | CT -> MR |", "|---|---|---|"]
    for name, v in PUBLISHED.items():
        lines.append(f"| {name} | {v['MR->CT']} | {v['CT->MR']} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, short schedule, source_only + lmisa (CPU, < 30 min)")
    ap.add_argument("--phase", choices=("all", "train", "evaluate"), default="all")
    ap.add_argument("--out", type=Path, default=REPO / "bench_out" / "abdomen")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--parallel", type=int, default=None,
                    help="runs trained (and evaluated) at once (several fit on one GPU); default 1, --quick on a CPU: one per core")
    ap.add_argument("--variants", nargs="+", default=None)
    ap.add_argument("--seeds", nargs="+", type=int, default=None)
    ap.add_argument("--ablation-seeds", type=int, default=1,
                    help="the ablations and peers run at the first K of --seeds (the main variants at all)")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--hold-out-target", type=float, default=0.0, metavar="FRACTION",
                    help="keep this share of the target's training cases out of every run (<target>_held, for "
                         "label_free.py --held-out); the runs train on the rest (<target>_fit)")
    ap.add_argument("--train-source", type=Path)
    ap.add_argument("--train-target", type=Path)
    ap.add_argument("--test-target", type=Path, help="evaluate finished runs on this data set (no retraining)")
    ap.add_argument("--direction", default=None, help="name of a custom direction, e.g. 'CT->MR'")
    ap.add_argument("--config", type=Path, help="YAML overriding the benchmark settings")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds for the train phase; unfinished runs stop (resumable) and are evaluated at their best checkpoint")
    ap.add_argument("--force", action="store_true", help="retrain / re-predict even if finished (old runs are kept aside)")
    ap.add_argument("--write-docs", action="store_true", help="also write docs/abdomen_results.json and the table in docs/")
    args = ap.parse_args(argv)

    from lmisa.training.trainer import describe_device as describe_hardware
    from lmisa.training.trainer import resolve_device

    device = str(resolve_device(args.device))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings = QUICK if args.quick else FULL
    if args.config:
        settings = yaml.safe_load(args.config.read_text())
    variants = args.variants or (["source_only", "lmisa"] if args.quick else list(MAIN_VARIANTS + ABLATIONS))
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    config_path = out / "bench_config.yaml"
    config_path.write_text(yaml.safe_dump(settings))

    if args.train_source or args.train_target:
        if not (args.train_source and args.train_target and args.test_target):
            sys.exit("error: a custom direction needs --train-source, --train-target and --test-target")
        directions = [Direction(args.direction or "custom", args.train_source, args.train_target, args.test_target)]
    else:
        directions = default_directions(out, args.split_seed)
        if args.direction:
            directions = [d for d in directions if d.name == args.direction]
    if not 0.0 <= args.hold_out_target < 1.0:
        sys.exit(f"error: --hold-out-target must be in [0, 1), got {args.hold_out_target}")
    if args.hold_out_target:
        directions = [hold_out_target(d, out / "data", args.hold_out_target, args.split_seed) for d in directions]
    jobs = plan_jobs(directions, variants, seeds, out, args.ablation_seeds)
    if args.parallel is not None and args.parallel < 1:
        sys.exit(f"error: --parallel must be at least 1, got {args.parallel}")
    parallel = args.parallel or default_parallel(args.quick, device, len(jobs))
    t0 = time.time()
    if args.phase in ("all", "train"):
        warm_caches(directions, settings, variants)
        run_jobs(jobs, config_path, device, parallel, args.force, args.time_limit)
    train_s = time.time() - t0
    if args.phase == "train":
        print(f"training phase finished in {train_s / 60:.1f} min")
        return
    rows = evaluate_jobs(jobs, args.test_target, out, device, args.force, parallel)
    agg = aggregate(rows)
    command = "python benchmarks/abdomen.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = "\n**Mean Dice % over the four organs**\n\n" + summary_table(agg) + markdown_table(agg) + errors_table(agg) + cases_table(agg)
    trained_on = sorted({r["device"] for r in rows})
    header = (
        f"Command: `{command}`\n\nRuns trained on: {'; '.join(trained_on)}. Evaluated on: "
        f"{describe_hardware(device)}; train phase {train_s / 60:.1f} min"
        f"{f' ({parallel} run(s) at a time)' if args.phase == 'all' else ''}, "
        f"total {(time.time() - t0) / 60:.1f} min. "
        f"Settings: `{json.dumps(settings)}`; seeds {seeds}. Epochs: epochs trained of the schedule "
        f"(a run cut short is evaluated at its best checkpoint).\n"
    )
    # another test set gets its own files: the table of the default test cases stays
    suffix = f"_{args.test_target.name}" if args.test_target else ""
    (out / f"results{suffix}.json").write_text(json.dumps(rows, indent=2))
    (out / f"results{suffix}.md").write_text(header + table + "\n" + published_table())
    plot_cost_vs_dice(agg, out / f"cost_vs_dice{suffix}.png")
    for d in directions:
        test_target = args.test_target or d.test_target
        done = [j for j in jobs if j.direction == d and j.seed == seeds[0] and (j.run_dir / "checkpoints" / "best.pt").exists()]
        preds = {j.variant: out / "predictions" / d.slug / test_target.name / j.variant / f"seed{j.seed}" for j in done}
        if preds:
            plot_examples(test_target, preds, out / f"examples_{d.slug}_{test_target.name}.png")
    print(header + table)
    if args.write_docs:
        (REPO / "docs").mkdir(exist_ok=True)
        (REPO / "docs" / "abdomen_results.json").write_text(json.dumps(rows, indent=2))
        (REPO / "docs" / "abdomen_table.md").write_text(header + table + "\n" + published_table())
        shutil.copyfile(out / f"cost_vs_dice{suffix}.png", REPO / "docs" / "cost_vs_dice.png")
        print("wrote docs/abdomen_results.json, docs/abdomen_table.md and docs/cost_vs_dice.png")


if __name__ == "__main__":
    main()
