"""Max-pooling on the CPU: lmisa.nets.pooling (a channels-last copy) against the plain nn.MaxPool2d, side by side.

    python benchmarks/bench_pooling.py [--size 96] [--batch 8] [--steps 10] [--repeats 3]

First the layer alone (forward + backward, a batch of 2 x ``--batch`` at the generator's pooled levels), then a
whole LMISA training step (``Trainer.train_step``, as benchmarks/bench_train.py times it) with each pooling,
alternating, in bf16 where the CPU computes it natively and in float32. Prints the times and the plain / lmisa ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator
from unittest import mock

import torch

from lmisa.nets import pooling

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import bench as bench_step  # noqa: E402


@contextlib.contextmanager
def plain_pooling(on: bool) -> Iterator[None]:
    """Every lmisa pooling layer runs the plain op while ``on``."""
    plain = pooling._CpuChannelsLastPool._plain
    with mock.patch.object(pooling._CpuChannelsLastPool, "_channels_last", plain) if on else contextlib.nullcontext():
        yield


def time_it(fn: Callable[[], object], n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def layer_table(args: argparse.Namespace) -> None:
    print(f"2x2 max-pooling, forward + backward, batch {2 * args.batch}, torch threads {torch.get_num_threads()} (ms)")
    print(f"{'input':<18} {'dtype':<9} {'plain':>8} {'lmisa':>8} {'plain / lmisa':>14}")
    layer = pooling.MaxPool2d(2)
    for channels, size in ((32, args.size), (64, args.size // 2), (128, args.size // 4)):
        for dtype in (torch.bfloat16, torch.float32):
            x = torch.randn(2 * args.batch, channels, size, size).to(dtype).requires_grad_(True)
            grad = torch.randn(2 * args.batch, channels, size // 2, size // 2).to(dtype)
            times = {}
            for plain in (True, False, True, False):
                with plain_pooling(plain):
                    times.setdefault(plain, []).append(time_it(lambda: layer(x).backward(grad), 20))
            a, b = (statistics.median(times[k]) * 1e3 for k in (True, False))
            print(f"{f'{channels} x {size} x {size}':<18} {str(dtype)[6:]:<9} {a:>8.2f} {b:>8.2f} {a / b:>13.2f}x")


def step_table(args: argparse.Namespace) -> None:
    from lmisa.precision import bf16_native

    step_args = argparse.Namespace(size=args.size, batch=args.batch, steps=args.steps, warmup=2, device="cpu")
    print(f"\nLMISA training step, batch {args.batch} + {args.batch}, {args.size} x {args.size}, median of {args.repeats} (s)")
    print(f"{'precision':<10} {'plain':>8} {'lmisa':>8} {'plain / lmisa':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for amp in ((True, False) if bf16_native(torch.device("cpu")) else (False,)):
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.repeats):
                for plain in (True, False):  # alternating: a slower spell of the machine hits both alike
                    with plain_pooling(plain):
                        times[plain].append(bench_step("lmisa", step_args, tmp, amp=amp)["step_s"])
            a, b = statistics.median(times[True]), statistics.median(times[False])
            print(f"{'bf16' if amp else 'float32':<10} {a:>8.3f} {b:>8.3f} {a / b:>13.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    layer_table(args)
    step_table(args)


if __name__ == "__main__":
    main()
