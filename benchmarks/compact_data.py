"""Move the benchmark between this machine and a lent GPU machine within its 64 MiB transfer limit.

    python benchmarks/compact_data.py pack-data   OUT_DIR SPACING DATASET [DATASET ...]
    python benchmarks/compact_data.py pack-test   OUT_DIR DATASET [DATASET ...]
    python benchmarks/compact_data.py unpack-data OUT_DIR ROOT
    python benchmarks/compact_data.py pack-runs   RUNS_DIR OUT_DIR [--max-mb 15]
    python benchmarks/compact_data.py unpack-runs ARCHIVE_DIR RUNS_DIR

pack-data resamples each case in-plane to the benchmark's spacing (what training does first anyway),
stores intensities as uint8 (CT is 8-bit already; MR is clipped to its 99.9th percentile) and labels
as uint8, lzma-compressed. pack-test stores test sets losslessly on their own grid (they are scored
there). unpack-data writes nnU-Net folders again (from either). pack-runs keeps what evaluation
needs from each run (config, plans, split, logs, the best weights in float16) in archives of at most
``--max-mb``; unpack-runs restores them (float32 weights) so that ``lmisa predict`` runs as usual.
"""

from __future__ import annotations

import argparse
import io
import lzma
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch


def _write_case(target: Path, name: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, image=image, label=label.astype(np.uint8), affine=affine)
    (target / f"{name}.npz.xz").write_bytes(lzma.compress(buf.getvalue(), preset=6))


def _cases(out: Path, datasets: list[Path]):
    """(target folder, case) for every case of every data set; the folders get their dataset.json."""
    from lmisa.datasets import Domain

    out.mkdir(parents=True, exist_ok=True)
    for root in datasets:
        target = out / root.name
        target.mkdir(exist_ok=True)
        (target / "dataset.json").write_text((root / "dataset.json").read_text())
        for case in Domain.open(root).cases("train"):
            yield target, case
        print(f"packed {root.name}: {sum(f.stat().st_size for f in target.iterdir()) / 2**20:.1f} MiB")


def pack_test(out: Path, datasets: list[Path]) -> None:
    """Lossless: the original arrays, dtypes and affines (test sets are scored on their own grid)."""
    from lmisa.io import read_image, read_label

    for target, case in _cases(out, datasets):
        image = read_image(case.image, dtype=None)
        _write_case(target, case.name, image.array, read_label(case.label).array, image.affine)


def pack_data(out: Path, spacing: float, datasets: list[Path]) -> None:
    from lmisa.io import read_image, read_label
    from lmisa.preprocess import resample_inplane, resampled_size

    for target, case in _cases(out, datasets):
        image = read_image(case.image, dtype=None)
        is_8bit = image.array.dtype == np.uint8
        size = resampled_size(image.array.shape[-2:], image.spacing[-2:], (spacing, spacing))
        arr = resample_inplane(image.array.astype(np.float32), size, "linear").numpy()
        lo, hi = (0.0, 255.0) if is_8bit else (float(min(arr.min(), 0.0)), float(np.percentile(arr, 99.9)))
        q = np.clip(np.rint((arr - lo) / max(hi - lo, 1e-6) * 255), 0, 255).astype(np.uint8)
        lab = resample_inplane(torch.from_numpy(read_label(case.label).array), size, "nearest").numpy()
        affine = image.affine.copy()
        scale = np.array([spacing / image.spacing[2], spacing / image.spacing[1], 1.0])  # columns: x, y, z
        affine[:3, :3] = affine[:3, :3] * scale[None, :]
        _write_case(target, case.name, q, lab, affine)


def unpack_data(src: Path, root: Path) -> None:
    from lmisa.io import MedicalImage, write_image

    for folder in sorted(p for p in src.iterdir() if p.is_dir()):
        target = root / folder.name
        (target / "imagesTr").mkdir(parents=True, exist_ok=True)
        (target / "labelsTr").mkdir(parents=True, exist_ok=True)
        (target / "dataset.json").write_text((folder / "dataset.json").read_text())
        for f in sorted(folder.glob("*.npz.xz")):
            name = f.name[: -len(".npz.xz")]
            with np.load(io.BytesIO(lzma.decompress(f.read_bytes()))) as z:
                affine = z["affine"]
                write_image(target / "imagesTr" / f"{name}_0000.nii.gz", MedicalImage(z["image"], affine), overwrite=True)
                write_image(target / "labelsTr" / f"{name}.nii.gz", MedicalImage(z["label"], affine), overwrite=True)
        print(f"unpacked {folder.name} -> {target}")


KEEP = ("config.yaml", "plans.json", "split.json", "log.csv", "train.log", "progress.png", "DONE", "hardware.txt")
WEIGHTS = ("net", "ema")  # the weight dicts of a best checkpoint, sent as float16


def _cast_weights(state: dict, dtype: torch.dtype) -> None:
    """Cast the floating-point tensors of the checkpoint's weight dicts to ``dtype``, in place."""
    for key in WEIGHTS:
        if key in state:
            state[key] = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state[key].items()}


def pack_runs(runs: Path, out: Path, max_mb: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    part, size, n = None, 0, 0

    def new_part():
        nonlocal part, size, n
        if part is not None:
            part.close()
        part = tarfile.open(out / f"runs{n:02d}.tar", "w")  # weights do not compress: plain tar is fast
        n += 1
        size = 0

    new_part()
    for best in sorted(runs.rglob("checkpoints/best.pt")):  # finished runs, and runs cut short
        run = best.parent.parent
        rel = run.relative_to(runs)
        blobs = {}
        for name in KEEP:
            if (run / name).exists():
                blobs[name] = (run / name).read_bytes()
        state = torch.load(run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
        _cast_weights(state, torch.float16)
        buf = io.BytesIO()
        torch.save(state, buf)
        blobs["checkpoints/best.pt"] = buf.getvalue()
        est = sum(len(b) for b in blobs.values()) * 0.9
        if size + est > max_mb * 2**20 and size > 0:
            new_part()
        for name, data in blobs.items():
            info = tarfile.TarInfo(str(rel / name))
            info.size = len(data)
            part.addfile(info, io.BytesIO(data))
        size += est
    part.close()
    print(f"packed runs into {n} archive(s) in {out}")


def unpack_runs(src: Path, runs: Path) -> None:
    for archive in sorted(src.glob("runs*.tar")):
        with tarfile.open(archive) as tar:
            tar.extractall(runs, filter="data")
    for best in runs.rglob("checkpoints/best.pt"):
        state = torch.load(best, map_location="cpu", weights_only=True)
        _cast_weights(state, torch.float32)
        torch.save(state, best)
    print(f"unpacked runs into {runs}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack-data")
    p.add_argument("out", type=Path)
    p.add_argument("spacing", type=float)
    p.add_argument("datasets", type=Path, nargs="+")
    p = sub.add_parser("pack-test")
    p.add_argument("out", type=Path)
    p.add_argument("datasets", type=Path, nargs="+")
    p = sub.add_parser("unpack-data")
    p.add_argument("src", type=Path)
    p.add_argument("root", type=Path)
    p = sub.add_parser("pack-runs")
    p.add_argument("runs", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--max-mb", type=float, default=15.0)
    p = sub.add_parser("unpack-runs")
    p.add_argument("src", type=Path)
    p.add_argument("runs", type=Path)
    a = ap.parse_args()
    if a.cmd == "pack-data":
        pack_data(a.out, a.spacing, a.datasets)
    elif a.cmd == "pack-test":
        pack_test(a.out, a.datasets)
    elif a.cmd == "unpack-data":
        unpack_data(a.src, a.root)
    elif a.cmd == "pack-runs":
        pack_runs(a.runs, a.out, a.max_mb)
    else:
        unpack_runs(a.src, a.runs)


if __name__ == "__main__":
    sys.exit(main())
