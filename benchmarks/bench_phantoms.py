"""Stand-in evidence that the synthetic phantoms pose a real, closable CT -> MR domain gap.

What it measures (no MR label is used to train the CT models or to choose anything; only the
labelled reference bound of item 3 reads MR labels):

1. Raw transfer: a small 2D U-Net (monai UNet, channels 16/32/64/128 by default, 0.21 M parameters;
   ``--channels 16,32,64`` is the unit test's 3-level model) trained on CT
   slices of the phantoms with per-volume z-scored intensities, scored (3D Dice per organ, mean of
   the 4 organs, per volume, averaged) on held-out CT volumes and on the MR and T1 renderings of the
   same held-out anatomies.
2. MLNGM transfer: the same model and budget on MLNGM inputs (``lmisa.mlngm.mlngm(x, levels=4,
   dims=2)`` then z-scored per volume, as the network sees it).
3. Reference upper bound (``--no-supervised`` skips it): the same model trained with MR labels on
   the MR renderings of the training anatomies (raw intensities). It reads target labels, so it is
   a bound for the table only, never a UDA result, and nothing is chosen with it.
4. Representation similarity: Pearson correlation, inside the body, between the CT and MR renderings
   of the same case, raw intensities vs MLNGM, on matched slices (every MR slice against the CT
   slice nearest to its centre; the MR slice is a 6.25 mm slab, the CT one 2.5 mm).

Run (about 3-4 minutes on one CPU core with the defaults; prints the tables):

    python benchmarks/bench_phantoms.py                 # 8 train / 4 test anatomies, 800 steps, 112 x 112
    python benchmarks/bench_phantoms.py --seeds 0 1     # two training seeds and their means
    python benchmarks/bench_phantoms.py --size 64 --channels 16,32,64 --steps 500   # the unit test's setting
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lmisa.mlngm import mlngm
from lmisa.synthetic import LABELS, PhantomConfig, case_seed, generate_case

N_CLASSES = len(LABELS)


def zscore(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float32)
    return (v - v.mean()) / max(float(v.std()), 1e-6)


def represent(image: np.ndarray, kind: str) -> np.ndarray:
    """Network input of a (Z, Y, X) volume: ``raw`` (z-scored) or ``mlngm`` (MLNGM, z-scored)."""
    if kind == "raw":
        return zscore(image)
    if kind == "mlngm":
        return zscore(mlngm(image.astype(np.float32), levels=4, dims=2))
    raise ValueError(kind)


CHANNELS = (16, 32, 64)


def make_model(channels: tuple[int, ...] | None = None) -> torch.nn.Module:
    from monai.networks.nets import UNet

    channels = tuple(channels or CHANNELS)
    strides = (2,) * (len(channels) - 1)
    return UNet(spatial_dims=2, in_channels=1, out_channels=N_CLASSES, channels=channels, strides=strides, num_res_units=1)


def train(images: list[np.ndarray], labels: list[np.ndarray], steps: int, batch: int, seed: int, lr: float = 3e-3) -> torch.nn.Module:
    """Train on all axial slices of the given volumes (cross-entropy + soft Dice), fixed seed."""
    from monai.losses import DiceCELoss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(np.concatenate(images)[:, None])
    y = torch.from_numpy(np.concatenate(labels).astype(np.int64)[:, None])
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    model.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(x), batch))
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    model.eval()
    return model


@torch.no_grad()
def predict(model: torch.nn.Module, volume: np.ndarray) -> np.ndarray:
    out = [model(torch.from_numpy(volume[i : i + 16, None])).argmax(1).numpy() for i in range(0, len(volume), 16)]
    return np.concatenate(out).astype(np.uint8)


def dice_per_organ(pred: np.ndarray, label: np.ndarray) -> list[float]:
    """3D Dice of each organ present in ``label`` (an organ absent from both counts as 1)."""
    scores = []
    for c in range(1, N_CLASSES):
        p, g = pred == c, label == c
        denom = p.sum() + g.sum()
        scores.append(1.0 if denom == 0 else 2.0 * float((p & g).sum()) / float(denom))
    return scores


def mean_dice(model: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, np.ndarray]:
    per = np.array([dice_per_organ(predict(model, x), y) for x, y in pairs])  # (cases, organs)
    return float(per.mean()), per.mean(axis=0)


def matched_slices(ct: np.ndarray, mr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every MR slice, the CT slice nearest to its centre (same field of view in z)."""
    nz_ct, nz_mr = len(ct), len(mr)
    centres = (np.arange(nz_mr) + 0.5) / nz_mr
    idx = np.clip(np.floor(centres * nz_ct).astype(int), 0, nz_ct - 1)
    return ct[idx], mr


def body_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.corrcoef(a[mask].astype(np.float64), b[mask].astype(np.float64))[0, 1])


def similarity(case: dict, target: str = "MR") -> dict[str, float]:
    """Correlation CT vs target of raw intensities and of MLNGM, inside the body and whole slice."""
    ct_img = case["CT"][0].array
    tg_img = case[target][0].array
    ct_m, tg_m = matched_slices(mlngm(ct_img, levels=4, dims=2), mlngm(tg_img, levels=4, dims=2))
    ct_r, tg_r = matched_slices(ct_img, tg_img)
    body = ndimage_body(ct_r)
    full = np.ones_like(body)
    return {
        "raw_body": body_correlation(ct_r, tg_r, body),
        "mlngm_body": body_correlation(ct_m, tg_m, body),
        "raw_all": body_correlation(ct_r, tg_r, full),
        "mlngm_all": body_correlation(ct_m, tg_m, full),
    }


def ndimage_body(ct: np.ndarray) -> np.ndarray:
    """Body mask of CT slices: above -500 (HU-like), holes filled per slice."""
    from scipy import ndimage

    m = ct > -500
    return np.stack([ndimage.binary_fill_holes(s) for s in m])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-cases", type=int, default=8)
    ap.add_argument("--test-cases", type=int, default=4)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--channels", default="16,32,64,128", help="U-Net channels per level (16,32,64 = the unit test's model)")
    ap.add_argument("--size", type=int, default=0, help="in-plane grid (0: the default PhantomConfig, 112 x 112 at 3 mm); same 336 mm field of view")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (model init + batches)")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small tensors on a busy CPU)")
    ap.add_argument("--no-supervised", action="store_true", help="skip the supervised-on-MR reference bound")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global CHANNELS
    CHANNELS = tuple(int(c) for c in args.channels.split(","))
    config = PhantomConfig() if not args.size else PhantomConfig(shape_yx=(args.size, args.size), spacing_yx_mm=336.0 / args.size)

    t0 = time.perf_counter()
    n = args.train_cases + args.test_cases
    cases = [generate_case(case_seed(args.data_seed, i), config) for i in range(n)]
    t_gen = time.perf_counter() - t0
    print(f"generated {n} cases x 3 appearances in {t_gen:.1f} s ({t_gen / n:.2f} s/case), "
          f"grid CT {cases[0]['CT'][0].shape} MR {cases[0]['MR'][0].shape} T1 {cases[0]['T1'][0].shape}")
    train_cases, test_cases = cases[: args.train_cases], cases[args.train_cases :]

    sims = [similarity(c, "MR") for c in test_cases]
    sims_t1 = [similarity(c, "T1") for c in test_cases]
    print("\nCT vs MR correlation, same anatomy (mean over test cases):")
    for key in ("raw_body", "mlngm_body", "raw_all", "mlngm_all"):
        print(f"  {key:11s} CT-MR {np.mean([s[key] for s in sims]):+.3f}   CT-T1 {np.mean([s[key] for s in sims_t1]):+.3f}")

    organs = [k for k in LABELS if k != "background"]
    print(f"\n2D U-Net {CHANNELS} trained on CT only, {args.steps} steps x batch {args.batch}, "
          f"{args.train_cases} train / {args.test_cases} held-out anatomies; mean 3D Dice of 4 organs")
    print(f"  {'input':6s} {'seed':>4s} {'CT':>6s} {'MR':>6s} {'T1':>6s}   MR per organ ({', '.join(organs)})   train s")
    results: dict[str, list[tuple[float, float, float]]] = {"raw": [], "mlngm": []}
    for kind in ("raw", "mlngm"):
        xs = [represent(c["CT"][0].array, kind) for c in train_cases]
        ys = [c["CT"][1].array for c in train_cases]
        tests = {a: [(represent(c[a][0].array, kind), c[a][1].array) for c in test_cases] for a in ("CT", "MR", "T1")}
        for s in args.seeds:
            t1 = time.perf_counter()
            model = train(xs, ys, args.steps, args.batch, seed=s)
            t_train = time.perf_counter() - t1
            d = {a: mean_dice(model, tests[a]) for a in tests}
            results[kind].append((d["CT"][0], d["MR"][0], d["T1"][0]))
            per = " ".join(f"{v:.2f}" for v in d["MR"][1])
            print(f"  {kind:6s} {s:4d} {d['CT'][0]:6.3f} {d['MR'][0]:6.3f} {d['T1'][0]:6.3f}   {per:38s} {t_train:6.1f}")
    if not args.no_supervised:
        xs = [represent(c["MR"][0].array, "raw") for c in train_cases]
        ys = [c["MR"][1].array for c in train_cases]
        tests = [(represent(c["MR"][0].array, "raw"), c["MR"][1].array) for c in test_cases]
        for s in args.seeds:
            t1 = time.perf_counter()
            model = train(xs, ys, args.steps, args.batch, seed=s)
            d = mean_dice(model, tests)
            results.setdefault("MR-sup", []).append((float("nan"), d[0], float("nan")))
            per = " ".join(f"{v:.2f}" for v in d[1])
            print(f"  {'MR-sup':6s} {s:4d} {'-':>6s} {d[0]:6.3f} {'-':>6s}   {per:38s} {time.perf_counter() - t1:6.1f}"
                  "   (upper bound: trained with MR labels)")
    if len(args.seeds) > 1:
        for kind, rows in results.items():
            r = np.array(rows)
            cells = " ".join("     -" if np.isnan(v) else f"{v:6.3f}" for v in r.mean(axis=0))
            print(f"  {kind:6s} mean {cells}")


if __name__ == "__main__":
    main()
