"""The tables of `2026-12-07-self-training-on-default-ct2mr.md` from the benchmark's `results.json` files.

Reads target results: run it only after the agreement between seeds is recorded (the prereg's order). Each recipe is
a name and a `results.json` path (``{s}`` for the seed) with the variant to take from it; each gain is two recipe
names compared seed by seed (on organ slices, the whole volume in parentheses, and the cases the first wins):

    python docs/prereg/2026-12-07-self-training-on-default-ct2mr-tables.py --direction "CT->MR" --seeds 4 5 6 \
      --recipe source_only bench_out/ct2mr3x/results.json source_only \
      --recipe lmisa bench_out/ct2mr3x/results.json lmisa \
      --recipe self_source_only "bench_out/ct2mr3x/self_source_only_seed{s}/results.json" source_only \
      --recipe self_lmisa "bench_out/ct2mr3x/self_lmisa_seed{s}/results.json" source_only \
      --gain self_source_only source_only --gain self_lmisa lmisa --gain self_lmisa self_source_only \
      --gain lmisa source_only
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ERRORS = ("missed", "false_positive", "beyond_extent")


def row(path: str, variant: str, direction: str, seed: int, protocol: str) -> dict:
    """The one row of ``path`` (``{s}`` filled) for this direction, variant, seed and protocol."""
    rows = json.loads(Path(path.format(s=seed)).read_text())
    found = [r for r in rows if (r["direction"], r["variant"], r["seed"], r["protocol"])
             == (direction, variant, seed, protocol)]
    if len(found) != 1:
        raise SystemExit(f"{path.format(s=seed)}: {len(found)} rows for {direction} {variant} seed {seed} {protocol}")
    return found[0]


def table(recipes: dict[str, tuple[str, str]], gains: list[tuple[str, str]], direction: str,
          seeds: list[int]) -> str:
    """Markdown: a row per seed and the mean (organ slices, whole volume), per organ, errors, gains, costs."""
    got = {(name, s, p): row(path, variant, direction, s, p) for name, (path, variant) in recipes.items()
           for s in seeds for p in ("organ_slices", "volume")}
    names = list(recipes)
    gain_names = [f"{a} - {b}" for a, b in gains]
    lines = ["| seed | " + " | ".join(names + gain_names) + " |", "|---" * (1 + len(names) + len(gains)) + "|"]

    def pair(values: list[float], sign: bool = False) -> str:
        fmt = "{:+.1f}" if sign else "{:.1f}"
        return f"{fmt.format(values[0])} ({fmt.format(values[1])})"

    def dice(name: str, s: int) -> list[float]:
        return [got[name, s, p]["dice_mean"] for p in ("organ_slices", "volume")]

    for s in seeds:
        cells = [pair(dice(n, s)) for n in names]
        cells += [pair([x - y for x, y in zip(dice(a, s), dice(b, s))], sign=True) for a, b in gains]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    mean = {n: [statistics.mean(dice(n, s)[i] for s in seeds) for i in (0, 1)] for n in names}
    cells = [pair(mean[n]) for n in names] + [pair([x - y for x, y in zip(mean[a], mean[b])], sign=True)
                                              for a, b in gains]
    lines.append("| mean | " + " | ".join(cells) + " |")
    organs = list(got[names[0], seeds[0], "organ_slices"]["dice"])
    lines.append("| per organ (mean) | " + " | ".join(
        ", ".join(f"{statistics.mean(got[n, s, 'organ_slices']['dice'][o] for s in seeds):.1f}" for o in organs)
        for n in names) + " |" * (len(gains) + 1))
    def error(name: str, kind: str) -> float:  # % of the organ, mean over organs, then over seeds
        return statistics.mean(statistics.mean(e[kind] for e in got[name, s, "organ_slices"]["errors_pct"].values())
                               for s in seeds)

    lines.append("| " + " / ".join(ERRORS) + " | " + " | ".join(
        " / ".join(f"{error(n, k):.1f}" for k in ERRORS) for n in names) + " |" * (len(gains) + 1))
    lines.append("")
    lines.append(f"organs: {', '.join(organs)}; errors: % of the organ, mean over organs, organ slices")
    for a, b in gains:
        wins = total = 0
        for s in seeds:
            ca, cb = got[a, s, "organ_slices"]["dice_cases"], got[b, s, "organ_slices"]["dice_cases"]
            wins += sum(ca[c] > cb[c] for c in ca)
            total += len(ca)
        seed_wins = sum(dice(a, s)[0] > dice(b, s)[0] for s in seeds)
        lines.append(f"{a} over {b}: {seed_wins} of {len(seeds)} seeds, {wins} of {total} cases (organ slices)")
    lines.append("")
    lines.append("per seed: per organ on organ slices | whole volume; " + " / ".join(ERRORS) + " (organ slices)")
    for n in names:
        for s in seeds:
            organ_slices, volume = got[n, s, "organ_slices"], got[n, s, "volume"]
            errors = " / ".join(f"{statistics.mean(e[k] for e in organ_slices['errors_pct'].values()):.1f}"
                                for k in ERRORS)
            per_organ = [", ".join(f"{r['dice'][o]:.1f}" for o in organs) for r in (organ_slices, volume)]
            lines.append(f"{n} seed {s}: {per_organ[0]} | {per_organ[1]}; {errors}")
    lines.append("")
    for n in names:
        walls = [got[n, s, "organ_slices"]["wall_s"] for s in seeds]
        device = got[n, seeds[0], "organ_slices"]["device"]
        lines.append(f"{n}: wall_s {', '.join(f'{w:,.0f}' for w in walls)}; {device}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direction", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--recipe", nargs=3, action="append", required=True, metavar=("NAME", "RESULTS", "VARIANT"))
    parser.add_argument("--gain", nargs=2, action="append", default=[], metavar=("RECIPE", "OVER"))
    args = parser.parse_args()
    recipes = {name: (path, variant) for name, path, variant in args.recipe}
    if len(recipes) != len(args.recipe):
        parser.error("each --recipe needs a name of its own")
    for pair in args.gain:
        if not set(pair) <= set(recipes):
            parser.error(f"--gain {' '.join(pair)}: name recipes given with --recipe ({', '.join(recipes)})")
    print(table(recipes, [tuple(g) for g in args.gain], args.direction, args.seeds))


if __name__ == "__main__":
    main()
