"""Rule of docs/prereg/2026-11-27-extent-cap-screen.md: source-val Dice (a) and the label-free organ-volume
score on the target's training images (b), with post.extent_margin 1.1 and without; no target label.

    python docs/prereg/2026-11-27-extent-cap-decide.py [--runs R1 R2 ...] [--test]

--test (only after the decision): the target TEST cases, both protocols, with and without the cap.
Predictions are made once without the cap; the capped maps are those maps through lmisa.extent.cap_extent
(the order predict uses: largest component, then the cap).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from lmisa.evaluation import evaluate_folders
from lmisa.extent import cap_extent, presence_spans_mm
from lmisa.io import read_label, write_image
from lmisa.predict import extent_caps, load_run, predict_path
from lmisa.volumes import compare_volumes

MARGIN = 1.1
DOMAINS = {"MR2CT": ("MR_CHAOS_T2", "CT_BTCV"), "CT2MR": ("CT_BTCV", "MR_CHAOS_T2")}
RUNS = {  # name: (benchmark folder, direction, variant, seed)
    "R1": ("bench_out/organs/base", "MR2CT", "lmisa", 0),
    "R2": ("bench_out/organs/base", "MR2CT", "lmisa", 1),
    "R3": ("bench_out/extent/base", "CT2MR", "lmisa", 0),
    "Q1": ("bench_out/abdomen_quick8", "CT2MR", "lmisa", 0),
    "Q2": ("bench_out/abdomen_quick8", "CT2MR", "source_only", 0),
    "Q3": ("bench_out/abdomen_quick8", "MR2CT", "lmisa", 0),
    "Q4": ("bench_out/abdomen_quick8", "MR2CT", "source_only", 0),
}


def source_extents(source: Path, cases: list[str], labels: dict[str, int]) -> dict[str, float]:
    organs = {n: v for n, v in labels.items() if v > 0}
    longest = dict.fromkeys(organs, 0.0)
    for case in cases:
        lab = read_label(source / "labelsTr" / f"{case}.nii.gz")
        z = lab.array.shape[0]
        for name, value in organs.items():
            present = (lab.array == value).reshape(z, -1).any(1)
            longest[name] = max(longest[name], presence_spans_mm(present, [0], [z], [lab.spacing[0]])[0])
    return longest


def predict_both(model, images: Path, out: Path) -> tuple[Path, Path]:
    """Predictions without the cap (m = 0) and the same maps capped at MARGIN."""
    plain, capped = out / "m0", out / f"m{MARGIN}"
    report = predict_path(model, images, plain, overwrite=True, progress=False, extent_margin=0.0)
    if report.failed or not report.written:
        raise SystemExit(f"prediction failed in {images}: {report.failed[:1]}")
    caps = extent_caps(model, MARGIN)
    capped.mkdir(parents=True, exist_ok=True)
    for path in sorted(plain.glob("*.nii.gz")):
        lab = read_label(path)
        write_image(capped / path.name, cap_extent(lab.array, lab.spacing[0], caps), like=lab, overwrite=True)
    return plain, capped


def linked_images(dataset: Path, cases: list[str], into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    for case in cases:
        (into / f"{case}_0000.nii.gz").symlink_to((dataset / "imagesTr" / f"{case}_0000.nii.gz").resolve())
    return into


def dice(summary) -> float:
    return summary.mean_over_structures["dice"]["mean"]  # already in %


def screen(name: str, work: Path, test: bool) -> dict:
    folder, direction, variant, seed = RUNS[name]
    src, tgt = DOMAINS[direction]
    bench = Path(folder)
    run = bench / "runs" / direction / variant / f"seed{seed}"
    source, target = bench / "data" / f"{src}_train", bench / "data" / f"{tgt}_train"
    split = json.loads((run / "split.json").read_text())
    model = load_run(run, "best", device="cpu")
    model.plans = replace(model.plans, organ_extent_mm=source_extents(source, split["source_train"], model.plans.labels))
    out = {"run": str(run), "extent_mm": {k: round(v, 1) for k, v in model.plans.organ_extent_mm.items()}}
    if test:  # after the decision: the target test cases only
        tests = bench / "data" / f"{tgt}_test"
        te = predict_both(model, tests / "imagesTr", work / "test")
        for protocol in ("organ_slices", "volume"):
            sums = [evaluate_folders(p, tests, model.plans.labels, work / f"test_{protocol}_{i}", protocol=protocol,
                                     progress=False) for i, p in enumerate(te)]
            out[f"test_{protocol}"] = [dice(s) for s in sums]
            out[f"test_{protocol}_organs"] = [{k: round(v["dice"]["mean"], 1) for k, v in s.per_structure.items()}
                                              for s in sums]
        return out
    val = predict_both(model, linked_images(source, split["source_val"], work / "val_images"), work / "val")
    out["val_dice"] = [dice(evaluate_folders(p, source, model.plans.labels, work / f"val_eval_{i}", allow_missing=True,
                                             progress=False)) for i, p in enumerate(val)]
    tr = predict_both(model, target / "imagesTr", work / "target_train")
    vols = [compare_volumes(p, source, model.plans.labels).to_dict() for p in tr]
    out["volume_score"] = [v["score"] for v in vols]
    out["volume_ratios"] = [{k: round(o["ratio"], 3) for k, o in v["organs"].items()} for v in vols]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", nargs="+", default=list(RUNS))
    ap.add_argument("--test", action="store_true", help="after the decision only: the target test cases")
    ap.add_argument("--out", type=Path, default=Path("bench_out/extent/screen.json"), help="with --test: test.json is a good name")
    args = ap.parse_args()
    results = {}
    for name in args.runs:
        with tempfile.TemporaryDirectory(prefix=f"extent_{name}_") as tmp:
            results[name] = screen(name, Path(tmp), args.test)
        r = results[name]
        if args.test:
            print(name, RUNS[name], "test organ slices m0 / m1.1: %.2f / %.2f, volume %.2f / %.2f"
                  % (*r["test_organ_slices"], *r["test_volume"]), flush=True)
        else:
            print(name, RUNS[name], "val Dice m0 / m1.1: %.2f / %.2f" % tuple(r["val_dice"]),
                  "volume score: %.3f / %.3f" % tuple(r["volume_score"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    if args.test:
        return
    a = all(r["val_dice"][1] >= r["val_dice"][0] - 0.1 for r in results.values())
    mr2ct = [r for n, r in results.items() if RUNS[n][1] == "MR2CT"]
    gain = sum(r["volume_score"][0] - r["volume_score"][1] for r in mr2ct) / len(mr2ct)
    b = gain >= 0.02 and all(r["volume_score"][1] <= r["volume_score"][0] + 0.02 for r in results.values())
    print(f"runs {args.runs}: (a) source val no lower by > 0.1 in any run: {a}; (b) MR->CT volume score lower by "
          f"{gain:.3f} on the mean (>= 0.02) and no run higher by > 0.02: {b}; adopt: {a and b}")


if __name__ == "__main__":
    main()
