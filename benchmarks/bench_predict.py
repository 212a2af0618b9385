"""Prediction time against slices per forward, side by side in one process, and whether the labels change.

    python benchmarks/bench_predict.py RUN IMAGES_DIR [--cases 2] [--batches 32 16 8] [--threads 2] [--repeats 2]

Predicts the first ``--cases`` images of ``IMAGES_DIR`` with the finished run ``RUN`` (its best checkpoint, the
run's own post-processing) at each batch size in turn, ``--repeats`` rounds, on the CPU. Prints the fastest
round of each, its speed-up over the first batch size, and how many voxels differ from the first's labels.
Why ``lmisa predict`` defaults to 8 slices per forward on a CPU (``lmisa.predict.CPU_SLICE_BATCH``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lmisa.io import read_image
from lmisa.predict import load_run, predict_volume


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("--cases", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 16, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_run(args.run, device="cpu")
    paths = sorted(args.images.glob("*.nii*"))[: args.cases]
    if not paths:
        raise SystemExit(f"error: {args.images}: no NIfTI image")
    images = [read_image(p) for p in paths]
    seconds: dict[int, list[float]] = {b: [] for b in args.batches}
    labels = {}
    for _ in range(args.repeats):
        for b in args.batches:
            start = time.perf_counter()
            labels[b] = [predict_volume(model, image, device="cpu", batch_size=b) for image in images]
            seconds[b].append(time.perf_counter() - start)
    first = args.batches[0]
    voxels = sum(x.size for x in labels[first])
    print(f"{len(images)} cases ({', '.join(p.name for p in paths)}), {voxels:,} voxels, {args.threads} torch threads")
    for b in args.batches:
        differ = sum(int((x != y).sum()) for x, y in zip(labels[b], labels[first]))
        print(f"batch {b:3d}: {min(seconds[b]):6.1f} s (rounds {', '.join(f'{s:.1f}' for s in seconds[b])}), "
              f"{min(seconds[first]) / min(seconds[b]):.2f}x batch {first}, {differ} voxels differ")


if __name__ == "__main__":
    main()
