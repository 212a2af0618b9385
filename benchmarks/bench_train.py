"""Training throughput and memory: LMISA against source_only (the cost of adaptation), one run.

    python benchmarks/bench_train.py [--device cpu|cuda] [--size 256] [--batch 16] [--steps 10] [--amp both|on|off]

Times the real Trainer.train_step (generator + critic updates, augmentation included) on random
slices held on the device, after warm-up. Prints slices/s, the LMISA/source_only time ratio, peak
memory and the parameter counts of generator and critic; with ``--amp both`` (the default) each variant
also runs in float32 and under bf16 autocast (``train.amp``, where the device computes bf16 natively:
``lmisa.precision``), alternating, and the bf16 / float32 speed-up is printed.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Callable

import torch

from lmisa.config import Config, apply_variant
from lmisa.nets import count_parameters
from lmisa.preprocess import Plans, SliceSet
from lmisa.training.data import TrainingData
from lmisa.training.trainer import Trainer

LABELS = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}


def fake_slices(n: int, size: int, labelled: bool, seed: int) -> SliceSet:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, size, size, generator=g).half()
    y = torch.randint(0, 5, (n, size, size), generator=g, dtype=torch.uint8) if labelled else None
    return SliceSet(x, y, torch.zeros(n, dtype=torch.int64), ["c"], torch.tensor([0]), torch.tensor([n]))


def bench(variant: str, args: argparse.Namespace, run_dir, before_timing: Callable[[], None] | None = None,
          amp: bool = True) -> dict:
    """Time ``args.steps`` training steps of ``variant`` after ``args.warmup`` ones (``before_timing`` runs
    between them: bench_cpu_parallel.py starts its processes together there); ``amp``: ``train.amp``."""
    cfg = apply_variant(Config(), variant)
    cfg.train.amp = amp
    cfg.loss.real_prior = "source"  # random slices: no anatomy to estimate an organ share from
    cfg.train.batch_size = args.batch
    cfg.data.size = (args.size, args.size)
    plans = Plans(spacing=(1.5, 1.5), size=(args.size, args.size), labels=LABELS)
    data = TrainingData(plans, {}, fake_slices(64, args.size, True, 0), fake_slices(16, args.size, True, 1),
                        fake_slices(64, args.size, False, 2))
    device = torch.device(args.device)
    trainer = Trainer(cfg, data, run_dir, device=device, progress=False)
    for _ in range(args.warmup):
        trainer.train_step(trainer.sample_batch())
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    if before_timing is not None:
        before_timing()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        stats = trainer.train_step(trainer.sample_batch())
    float(stats["total"])  # one sync at the end
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / args.steps
    slices = args.batch * (2 if trainer.target_sampler is not None else 1)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "variant": variant,
        "bf16": trainer.use_amp,
        "step_s": seconds,
        "slices_per_s": slices / seconds,
        "peak_mb": peak,
        "gen_params": count_parameters(trainer.net),
        "critic_params": count_parameters(trainer.critic) if trainer.critic is not None else 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--amp", choices=("both", "on", "off"), default="both",
                    help="train.amp: float32 and bf16 alternating (both), or one of them")
    ap.add_argument("--repeats", type=int, default=1, help="times each (variant, precision) is timed; the median is kept")
    args = ap.parse_args()
    import statistics
    import tempfile

    precisions = {"both": (False, True), "on": (True,), "off": (False,)}[args.amp]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("source_only", "lmisa"):
            timed: dict[bool, list[dict]] = {amp: [] for amp in precisions}
            for _ in range(args.repeats):
                for amp in precisions:  # alternating, so that a slower spell of the machine hits both alike
                    timed[amp].append(bench(variant, args, tmp, amp=amp))
            for runs in timed.values():
                rows.append(dict(runs[0], step_s=statistics.median(r["step_s"] for r in runs),
                                 slices_per_s=statistics.median(r["slices_per_s"] for r in runs)))
    mem = "peak GPU MB" if args.device.startswith("cuda") else "peak RSS MB (process)"
    print(f"2D training, batch {args.batch}, {args.size}x{args.size}, device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"{'variant':<12} {'precision':>9} {'s/step':>8} {'slices/s':>9} {mem:>22} {'generator':>10} {'critic':>8}")
    for r in rows:
        print(f"{r['variant']:<12} {'bf16' if r['bf16'] else 'float32':>9} {r['step_s']:>8.3f} {r['slices_per_s']:>9.1f} "
              f"{r['peak_mb']:>22.0f} {r['gen_params']:>10,} {r['critic_params']:>8,}")
    by = {(r["variant"], r["bf16"]): r["step_s"] for r in rows}
    for bf16 in sorted({r["bf16"] for r in rows}):
        print(f"LMISA / source_only time per step ({'bf16' if bf16 else 'float32'}): "
              f"{by[('lmisa', bf16)] / by[('source_only', bf16)]:.2f}x")
    if len({r["bf16"] for r in rows}) == 2:
        for variant in ("source_only", "lmisa"):
            print(f"{variant}: bf16 speed-up over float32 {by[(variant, False)] / by[(variant, True)]:.2f}x")
    elif len(precisions) == 2:
        print("bf16: not native on this device (lmisa.precision), both timings are float32")


if __name__ == "__main__":
    main()
