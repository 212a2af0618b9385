"""Benchmark of lmisa.mlngm: vectorised torch vs the naive per-pixel loop, and volume throughput.

Run from the repository root:

    python benchmarks/bench_mlngm.py                 # CPU, and CUDA when available
    python benchmarks/bench_mlngm.py --device cuda   # one device only
    python benchmarks/bench_mlngm.py --quick         # smaller volume, one repeat

What it measures (best of ``--repeats`` runs after one warm-up run):
1. the naive loop reference of ``tests/test_mlngm.py`` (the authors' per-pixel way) and the
   vectorised ``mlngm`` on the same 64x64 float64 image, and their ratio, in the same run;
2. voxels/s of ``mlngm`` on a random 512x512x200 float32 volume in 2D mode (every slice on its own)
   and 3D mode (in-plane and 3x3x3 windows), per device; on CUDA the input already lives on the
   GPU and the clock stops after ``torch.cuda.synchronize()``; ``mlngm_volume`` from a numpy volume
   (host-device transfers included) is timed too.
The machine load is printed as well: the CPU numbers mean little on a busy machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lmisa.mlngm import mlngm, mlngm_volume

ROOT = Path(__file__).resolve().parents[1]


def load_naive() -> Callable[..., np.ndarray] | None:
    """``naive_mlngm`` from tests/test_mlngm.py (the loop reference lives with the tests)."""
    path = ROOT / "tests" / "test_mlngm.py"
    try:
        spec = importlib.util.spec_from_file_location("_mlngm_reference", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.naive_mlngm
    except Exception as exc:  # e.g. pytest missing
        print(f"(naive reference not available: {exc})")
        return None


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """Best wall time of ``repeats`` runs of ``fn`` after one warm-up run."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CPU, plus CUDA when available")
    parser.add_argument("--quick", action="store_true", help="512x512x20 volume, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 3, quick 1)")
    parser.add_argument("--slices", type=int, default=None, help="volume depth (default 200, quick 20)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    depth = args.slices or (20 if args.quick else 200)

    devices = ["cpu"] if args.device in ("auto", "cpu") else []
    if args.device in ("auto", "cuda"):
        if torch.cuda.is_available():
            devices.append("cuda")
        elif args.device == "cuda":
            sys.exit("--device cuda: no CUDA device available")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {os.cpu_count()} cores, "
          f"load average {load:.1f}" + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""))

    # 1. naive loop vs vectorised, same input, same run
    img = np.random.default_rng(0).normal(size=(64, 64))
    naive = load_naive()
    if naive is not None:
        t0 = time.perf_counter()
        ref = naive(img, levels=4)
        t_naive = time.perf_counter() - t0
        t_vec = timed(lambda: mlngm(img, levels=4), 20)  # tiny: best of many (thread noise)
        err = float(np.abs(mlngm(img) - ref).max())
        print(f"\n64x64 float64, 4 levels: naive loop {t_naive * 1e3:.0f} ms, vectorised "
              f"{t_vec * 1e3:.2f} ms (CPU) -> {t_naive / t_vec:.0f}x faster; max |diff| {err:.1e}")

    # 2. throughput on a 512x512xD volume
    vol = np.random.default_rng(1).normal(100.0, 30.0, size=(depth, 512, 512)).astype(np.float32)
    rows = []
    for dev in devices:
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        x = torch.from_numpy(vol).to(dev)
        cases = [
            ("2D (per slice)", lambda: mlngm(x, dims=2)),
            ("3D, 1x3x3 window", lambda: mlngm(x, dims=3)),
            ("3D, 3x3x3 window", lambda: mlngm(x, dims=3, window3d=True)),
        ]
        if dev == "cuda":
            cases.append(("2D mlngm_volume numpy->GPU->numpy", lambda: mlngm_volume(vol, device="cuda")))
        for name, fn in cases:
            t = timed(fn, repeats, sync)
            rows.append((dev, name, t, vol.size / t / 1e6))
        del x

    print(f"\nvolume {depth}x512x512 (Z, Y, X) float32, 4 levels, best of {repeats}:")
    print(f"{'device':<7} {'mode':<36} {'seconds':>8} {'Mvoxel/s':>9}")
    for dev, name, t, mvs in rows:
        print(f"{dev:<7} {name:<36} {t:>8.3f} {mvs:>9.1f}")


if __name__ == "__main__":
    main()
