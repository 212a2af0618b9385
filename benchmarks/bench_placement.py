"""The critic window's placement (``loss.critic_window``): its cost and what a cheaper one changes
(docs/RESULTS.md 2p; neither cheaper path was adopted, so both live here).

    python benchmarks/bench_placement.py RUN [RUN ...] --stride 2 --out placement.json

For each finished run (its config, split and final weights, ``checkpoints/latest.pt``), on its target's
training slices as the trainer caches them (no target label is read), side by side in one process:
- ``before``: the trainer's placement (``Trainer.target_organ_pixels``): the whole network (reconstruction
  decoder too) on every slice, 4 training batches per forward;
- ``all``: the segmentation path only (``lmisa.nets.segment_logits``), one training batch per forward, on
  every slice: how many slices' organ-pixel counts differ from ``before``'s;
- ``strided``: that path on every ``--stride``-th slice of each scan (:func:`placement_slices`), the others
  holding the count of the one before (:func:`hold_counts`).
It prints each pass's time and the ratio ``before / strided``, and how many slices of the full window
(``--margin`` times the source organ region, placed on ``all``'s counts) the strided window does not
hold, with the largest shift of a scan's window in slices. A run trained without the window is placed
with ``--margin``. Where the checkpoint holds the window training placed last, its difference from the
full window on the final weights is printed too: how far a placement moves between epochs.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lmisa.config import Config
from lmisa.critic_window import window_index
from lmisa.nets import segment_logits
from lmisa.training.checkpoint import load_checkpoint
from lmisa.training.data import prepare_training_data
from lmisa.training.trainer import Trainer


def placement_slices(case_starts: list[int], case_lengths: list[int], stride: int) -> np.ndarray:
    """Indices into a slice stack of every ``stride``-th slice of each case, from its first.

    >>> placement_slices([0, 5], [5, 3], 2).tolist()
    [0, 2, 4, 5, 7]
    """
    if stride < 1:
        raise ValueError(f"placement_slices needs a stride of at least 1, got {stride}")
    parts = [np.arange(int(start), int(start) + int(n), stride) for start, n in zip(case_starts, case_lengths)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def hold_counts(sampled: np.ndarray, case_lengths: list[int], stride: int) -> np.ndarray:
    """Per-slice amounts of the whole stack from those of :func:`placement_slices` (in its order): each
    slice takes the amount of the last predicted slice of its case at or before it.

    >>> hold_counts(np.array([1, 3, 5, 7, 9]), [5, 3], 2).tolist()
    [1, 1, 3, 3, 5, 7, 7, 9]
    """
    out, at = [], 0
    for n in case_lengths:
        m = -(-int(n) // stride)  # slices predicted in this case
        out.append(np.repeat(sampled[at : at + m], stride)[: int(n)])
        at += m
    if at != sampled.shape[0]:
        raise ValueError(f"hold_counts: {sampled.shape[0]} amounts for {at} predicted slices")
    return np.concatenate(out) if out else np.zeros(0, dtype=sampled.dtype)


@torch.no_grad()
def counts_segmentation_only(trainer: Trainer, index: torch.Tensor) -> torch.Tensor:
    """Organ pixels (argmax) on the target slices ``index``: segmentation path only, one batch per forward."""
    net = trainer.ema if trainer.ema is not None else trainer.net
    net.eval()
    step, counts = trainer.cfg.train.batch_size, []
    for start in range(0, len(index), step):
        x, _ = trainer.target_sampler.gather(index[start : start + step])
        x = trainer.represent(x)
        with trainer.autocast():  # the precision of the trainer's own placement, so that only the path differs
            counts.append((segment_logits(net, x).argmax(1) > 0).flatten(1).sum(1))
    return torch.cat(counts)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def window_starts(index: np.ndarray, starts: list[int], lengths: list[int]) -> list[int]:
    """First slice of each case's window (``index`` holds one contiguous run per case)."""
    return [int(index[(index >= s) & (index < s + n)].min()) - s for s, n in zip(starts, lengths)]


def measure(run: Path, stride: int, margin: float) -> dict:
    cfg = Config.load(run / "config.yaml", saved_run=True)
    trained_window = cfg.loss.critic_window
    if trained_window <= 0:
        cfg = replace(cfg, loss=replace(cfg.loss, critic_window=margin))
    cfg = replace(cfg, train=replace(cfg.train, device="cpu"))
    split = json.loads((run / "split.json").read_text())
    data = prepare_training_data(cfg, Path(split["source"]), Path(split["target"]), split, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, data, Path(tmp), "cpu", progress=False, log=logging.getLogger("bench_placement"))
    state = load_checkpoint(run / "checkpoints" / "latest.pt", map_location="cpu")
    (trainer.ema if trainer.ema is not None else trainer.net).load_state_dict(state.get("ema", state["net"]))
    trainer.keep_precision(state)  # the precision the run trained in
    slices = trainer.target_sampler.slices
    starts, lengths = slices.case_starts.tolist(), slices.case_lengths.tolist()
    span = cfg.loss.critic_window * data.region_span_mm

    before, t_before = timed(trainer.target_organ_pixels)
    every, t_all = timed(lambda: counts_segmentation_only(trainer, torch.arange(len(slices))))
    picked = torch.as_tensor(placement_slices(starts, lengths, stride))
    sparse, t_strided = timed(lambda: counts_segmentation_only(trainer, picked))
    full = window_index(every.numpy(), starts, lengths, data.target_slice_mm, span)
    cheap = window_index(hold_counts(sparse.numpy(), lengths, stride), starts, lengths, data.target_slice_mm, span)
    shifts = np.abs(np.subtract(window_starts(full, starts, lengths), window_starts(cheap, starts, lengths)))
    row = {
        "run": str(run), "trained_window": trained_window, "slices": len(slices), "window": int(full.size),
        "counts_differ": int((before != every).sum()),
        "not_in_strided": int(np.setdiff1d(full, cheap).size),
        "share_not_in_strided": float(np.setdiff1d(full, cheap).size / max(1, full.size)),
        "max_shift_slices": int(shifts.max(initial=0)), "scans_shifted": int((shifts > 0).sum()), "scans": len(starts),
        "s_before": t_before, "s_all": t_all, "s_strided": t_strided, "ratio_before_strided": t_before / t_strided,
        "ratio_before_all": t_before / t_all,
    }
    if state.get("critic_window") is not None:
        last = state["critic_window"].cpu().numpy()
        row["not_in_last_training_window"] = int(np.setdiff1d(full, last).size)
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--margin", type=float, default=1.1, help="window of a run trained without one")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: as one of two runs per 2-core CPU)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for run in args.runs:
        row = measure(run, args.stride, args.margin)
        rows.append(row)
        print(f"{run}: before {row['s_before']:.1f} s, all {row['s_all']:.1f} s, strided {row['s_strided']:.1f} s "
              f"(before / strided {row['ratio_before_strided']:.2f}x, before / all {row['ratio_before_all']:.2f}x); "
              f"counts differing {row['counts_differ']}; {row['not_in_strided']} of {row['window']} window slices "
              f"not in the strided window ({100 * row['share_not_in_strided']:.1f} %), largest shift "
              f"{row['max_shift_slices']} slices, {row['scans_shifted']} of {row['scans']} scans shifted"
              + (f"; {row['not_in_last_training_window']} not in training's last window"
                 if "not_in_last_training_window" in row else ""), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
