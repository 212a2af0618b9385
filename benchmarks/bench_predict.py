"""Prediction time against slices per forward and precision, side by side in one process, and whether the labels
change.

    python benchmarks/bench_predict.py RUN IMAGES_DIR [--cases 2] [--batches 32 16 8] [--threads 2] [--repeats 2]
                                       [--amp off|both]

Predicts the first ``--cases`` images of ``IMAGES_DIR`` with the finished run ``RUN`` (its best checkpoint, the
run's own post-processing) at each batch size in turn, ``--repeats`` rounds, on the CPU; with ``--amp both`` each
also in float32 and under bf16 autocast (``train.amp``: on a CPU with AMX or AVX512-BF16,
``lmisa.precision``). Prints the fastest round of each, its speed-up over the first (float32, first batch size),
and how many voxels differ from its labels. Why ``lmisa predict`` defaults to 8 slices per forward on a CPU
(``lmisa.predict.CPU_SLICE_BATCH``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lmisa.io import read_image
from lmisa.precision import bf16_native
from lmisa.predict import load_run, predict_volume


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("--cases", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 16, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--amp", choices=("off", "both"), default="off", help="float32 only, or float32 and bf16")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_run(args.run, device="cpu")
    paths = sorted(args.images.glob("*.nii*"))[: args.cases]
    if not paths:
        raise SystemExit(f"error: {args.images}: no NIfTI image")
    images = [read_image(p) for p in paths]
    settings = [(b, amp) for amp in ((False, True) if args.amp == "both" else (False,)) for b in args.batches]
    seconds: dict[tuple[int, bool], list[float]] = {s: [] for s in settings}
    labels = {}
    for _ in range(args.repeats):
        for b, amp in settings:
            model.bf16 = amp
            start = time.perf_counter()
            labels[b, amp] = [predict_volume(model, image, device="cpu", batch_size=b) for image in images]
            seconds[b, amp].append(time.perf_counter() - start)
    first = settings[0]
    voxels = sum(x.size for x in labels[first])
    native = bf16_native(torch.device("cpu"), model.config.train.dims)
    print(f"{len(images)} cases ({', '.join(p.name for p in paths)}), {voxels:,} voxels, {args.threads} torch threads, "
          f"bf16 native on this CPU: {native}")
    for b, amp in settings:
        differ = sum(int((x != y).sum()) for x, y in zip(labels[b, amp], labels[first]))
        print(f"batch {b:3d} {'bf16' if amp and native else 'float32':>7}: {min(seconds[b, amp]):6.1f} s "
              f"(rounds {', '.join(f'{s:.1f}' for s in seconds[b, amp])}), "
              f"{min(seconds[first]) / min(seconds[b, amp]):.2f}x float32 batch {first[0]}, {differ} voxels differ")


if __name__ == "__main__":
    main()
