"""CPU training throughput: one run using every core against one single-thread run per core, side by side.

    python benchmarks/bench_cpu_parallel.py [--size 96] [--batch 8] [--steps 20] [--amp on|off]

Why `benchmarks/abdomen.py --quick` trains one run per core on a CPU: these small networks do not scale
over threads. Times the real LMISA ``Trainer.train_step`` (bench_train.py) in fresh processes: first one
process with all cores as torch threads, then one one-thread process per core, timed together (each starts
its timed steps when all have warmed up). Prints the training steps per second of the machine in each case
and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmisa.cores import usable_cores

HERE = Path(__file__).resolve().parent


def worker(args: argparse.Namespace) -> None:
    """Build a trainer, warm it up, wait for the start signal (all workers ready), then time its steps."""
    import torch

    sys.path.insert(0, str(HERE))
    import bench_train

    torch.set_num_threads(args.threads)
    ready, go = Path(args.sync) / f"ready{os.getpid()}", Path(args.sync) / "go"

    def wait_for_start() -> None:
        ready.touch()
        while not go.exists():
            time.sleep(0.01)

    with tempfile.TemporaryDirectory() as tmp:
        row = bench_train.bench("lmisa", argparse.Namespace(device="cpu", size=args.size, batch=args.batch,
                                                            steps=args.steps, warmup=2), tmp, wait_for_start,
                                amp=args.amp == "on")
    print(json.dumps({"step_s": row["step_s"]}))


def launch(n: int, threads: int, args: argparse.Namespace) -> list[float]:
    """``n`` worker processes timed together, ``threads`` torch threads each; their seconds per step."""
    with tempfile.TemporaryDirectory() as sync:
        cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--size", str(args.size),
               "--batch", str(args.batch), "--steps", str(args.steps), "--amp", args.amp, "--sync", sync]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]
        while len(list(Path(sync).glob("ready*"))) < n and all(p.poll() is None for p in procs):
            time.sleep(0.05)
        (Path(sync) / "go").touch()
        outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("error: a benchmark worker failed")
    return [json.loads(o.strip().splitlines()[-1])["step_s"] for o in outs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--amp", choices=("on", "off"), default="on",
                    help="train.amp: bf16 autocast where the CPU computes it natively (AMX, AVX512-BF16), else float32")
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sync", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    cores = usable_cores()
    t0 = time.perf_counter()
    one = launch(1, cores, args)
    many = launch(cores, 1, args)
    rate_one = 1 / one[0]
    rate_many = sum(1 / s for s in many)
    import torch

    from lmisa.precision import bf16_native

    precision = "bf16" if args.amp == "on" and bf16_native(torch.device("cpu")) else "float32"
    print(f"LMISA training step, batch {args.batch} + {args.batch}, {args.size}x{args.size}, {cores} cores, {precision} "
          f"({time.perf_counter() - t0:.0f} s in all)")
    print(f"1 process x {cores} threads: {one[0]:.3f} s/step, {rate_one:.2f} steps/s")
    print(f"{cores} processes x 1 thread: {', '.join(f'{s:.3f}' for s in many)} s/step, {rate_many:.2f} steps/s in all")
    print(f"one run per core / one run on every core: {rate_many / rate_one:.2f}x the steps per second")


if __name__ == "__main__":
    main()
