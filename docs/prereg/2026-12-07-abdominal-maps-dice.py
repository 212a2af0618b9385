"""`2026-12-07-abdominal-maps-dice.md`: each set of self-training maps scored against the labels of the target
training cases it maps, on organ slices and the whole volume, beside the base's and the self-trained run's test Dice.

    python docs/prereg/2026-12-07-abdominal-maps-dice.py \
      --out docs/prereg/records/2026-12-07-abdominal-maps-dice/maps_dice.json
    python docs/prereg/2026-12-07-abdominal-maps-dice.py --ct2mr --out ...   # only after 2al has read its targets

Reads target training labels (the maps' cases) and, for the test Dice, records already read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from lmisa.evaluation import evaluate_folders
from lmisa.predict import load_run, predict_path

PROTOCOLS = ("organ_slices", "volume")
MR2CT = {  # name: (maps, labelled data set of the mapped cases, base's test results, self-trained test results,
    #               the self-trained run)
    f"MR2CT_lmisa_seed{s}": (
        f"bench_out/stdef/maps/MR2CT_seed{s}", "bench_out/so3x/data/CT_BTCV_train",
        f"docs/prereg/records/2026-12-06-critic-window-beyond-source/seed{s}/target_gated.json",
        f"docs/prereg/records/2026-12-07-self-training-on-default/target_self_seed{s}.json",
        f"bench_out/stdef/self_seed{s}/runs/MR2CT/source_only/seed{s}",
    ) for s in (4, 5, 6)
}
CT2MR = {
    f"CT2MR_{v}_seed{s}": (
        f"bench_out/ct2mr3x/maps/{v}_seed{s}", "bench_out/ct2mr3x/data/MR_CHAOS_T2_train",
        "bench_out/ct2mr3x/results.json", f"bench_out/ct2mr3x/self_{v}_seed{s}/results.json",
        f"bench_out/ct2mr3x/self_{v}_seed{s}/runs/CT2MR/source_only/seed{s}",
    ) for v in ("lmisa", "source_only") for s in (4, 5, 6)
}
PREDICTIONS = Path("bench_out/maps_dice")  # the self-trained runs' predictions of their maps' cases
PHANTOMS = Path("bench_out/st_phantoms")  # RESULTS 2ak's pairs


def phantom_pair(direction: str, seed: int) -> tuple[Path, Path, Path]:
    """(maps, a data set of the mapped anatomies alone, the self-trained run) of one pair of 2ak: the folder of
    the phantoms' target holds all 32 anatomies, the maps 12."""
    pair = PHANTOMS / "runs" / f"{direction}_seed{seed}" / "self_train"
    phantoms = PHANTOMS / "phantoms" / {"CT2MR": "MR", "MR2CT": "CT"}[direction]
    data = PREDICTIONS / "phantom_data" / f"{direction}_seed{seed}"
    if not data.is_dir():  # made whole, then renamed: an interrupted one is made again
        partial = data.with_name(data.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        for sub in ("imagesTr", "labelsTr"):
            (partial / sub).mkdir(parents=True)
        for m in (pair / "pseudo_labels").glob("*.nii.gz"):
            case = m.name.removesuffix(".nii.gz")
            image = f"{case}_0000.nii.gz"
            (partial / "imagesTr" / image).symlink_to((phantoms / "imagesTr" / image).resolve())
            (partial / "labelsTr" / m.name).symlink_to((phantoms / "labelsTr" / m.name).resolve())
        (partial / "dataset.json").symlink_to((phantoms / "dataset.json").resolve())
        partial.rename(data)
    return pair / "pseudo_labels", data, pair / "run"


def self_on_maps_cases(name: str, maps: Path, data: Path, run: Path) -> dict[str, dict]:
    """The self-trained ``run``'s predictions of its maps' cases, scored against their labels and against the maps."""
    predicted = PREDICTIONS / name
    if not predicted.is_dir():  # written whole, then renamed: an interrupted one is made again
        partial = predicted.with_name(predicted.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        predict_path(load_run(run, "best", device="cpu"), data / "imagesTr", partial, progress=False)
        partial.rename(predicted)
    row = {"self_trained_on_maps_cases": maps_dice(predicted, data),
           "self_trained_against_maps": maps_dice(predicted, data, reference=maps)}
    on = {p: row["self_trained_on_maps_cases"][p]["dice"] for p in PROTOCOLS}
    against = {p: row["self_trained_against_maps"][p]["dice"] for p in PROTOCOLS}
    print(f"{name}: the self-trained run on the maps' cases {both(on)}, against its maps {both(against)}")
    return row


def maps_dice(maps: Path, data: Path, reference: Path | None = None) -> dict[str, dict]:
    """Mean and per-organ Dice of ``maps`` against ``data/labelsTr`` (or ``reference``), per protocol."""
    out = {}
    for protocol in PROTOCOLS:
        with tempfile.TemporaryDirectory() as work:
            evaluate_folders(maps, reference or data / "labelsTr", labels=data / "dataset.json", out_dir=work,
                             protocol=protocol, progress=False)
            summary = json.loads((Path(work) / "summary.json").read_text())
        out[protocol] = {"dice": summary["mean_over_structures"]["dice"]["mean"],
                         "per_organ": {o: v["dice"]["mean"] for o, v in summary["per_structure"].items()}}
    return out


def test_dice(path: Path, name: str, self_trained: bool) -> dict[str, float]:
    """The test Dice per protocol of the run behind ``name`` (its variant and seed) in a benchmark results file."""
    seed = int(name.rsplit("seed", 1)[1])
    direction = {"MR2CT": "MR->CT", "CT2MR": "CT->MR"}[name.split("_", 1)[0]]
    variant = "source_only" if self_trained else name.split("_", 1)[1].rsplit("_seed", 1)[0]
    rows = [r for r in json.loads(path.read_text())
            if (r["direction"], r["variant"], r["seed"]) == (direction, variant, seed)]
    if len(rows) != len(PROTOCOLS):
        raise SystemExit(f"{path}: {len(rows)} rows for {direction} {variant} seed {seed}, expected one a protocol")
    return {r["protocol"]: r["dice_mean"] for r in rows}


def both(dice: dict[str, float]) -> str:
    return f"{dice['organ_slices']:.1f} ({dice['volume']:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ct2mr", action="store_true", help="the CT -> MR sets (after 2al has read its targets)")
    ap.add_argument("--self-on-maps-cases", action="store_true",
                    help="also the self-trained runs on the cases of their maps (the prereg's addition)")
    ap.add_argument("--phantoms", action="store_true", help="the same for 2ak's phantom pairs (the addition)")
    args = ap.parse_args()
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for name, (maps, data, base, selfed, run) in (CT2MR if args.ct2mr else MR2CT).items():
        if name in result and (not args.self_on_maps_cases or "self_trained_on_maps_cases" in result[name]):
            continue  # scored already (the same files score the same)
        maps, data = Path(maps), Path(data)
        row = {"maps": maps_dice(maps, data), "base_test": test_dice(Path(base), name, False),
               "self_trained_test": test_dice(Path(selfed), name, True)}
        maps_pair = {p: row["maps"][p]["dice"] for p in PROTOCOLS}
        print(f"{name}: maps {both(maps_pair)}, base test {both(row['base_test'])}, "
              f"self-trained test {both(row['self_trained_test'])} (organ slices, whole volume in parentheses)")
        if args.self_on_maps_cases:
            row.update(self_on_maps_cases(name, maps, data, Path(run)))
        result[name] = row
    for direction, seed in [(d, s) for d in ("CT2MR", "MR2CT") for s in range(5)] if args.phantoms else []:
        name = f"phantoms_{direction}_seed{seed}"
        if name not in result:
            maps, data, run = phantom_pair(direction, seed)
            result[name] = {"maps": maps_dice(maps, data), **self_on_maps_cases(name, maps, data, run)}
    for prefix in sorted({n.rsplit("_seed", 1)[0] for n in result if not n.startswith("phantoms_")}):
        rows = [r for n, r in result.items() if n.startswith(prefix + "_seed")]
        maps = statistics.mean(r["maps"]["organ_slices"]["dice"] for r in rows)
        base = statistics.mean(r["base_test"]["organ_slices"] for r in rows)
        selfed = statistics.mean(r["self_trained_test"]["organ_slices"] for r in rows)
        # the reading written first knew "above" (+2.0 or more) and "about" (within 2.0); "below" added after CT -> MR
        reading = "above" if selfed - maps >= 2.0 else "below" if selfed - maps <= -2.0 else "about"
        print(f"{prefix} mean of {len(rows)}: maps {maps:.1f}, base test {base:.1f}, self-trained test {selfed:.1f}: "
              f"{reading} its maps ({selfed - maps:+.1f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
