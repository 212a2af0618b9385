"""``lmisa demo``: the method shown end to end on built-in phantoms, on a bare CPU, in minutes.

1. Writes CT-like, MR-like and T1-like phantom data sets (``lmisa.synthetic``).
2. Splits the anatomies by case: labelled CT-like cases (source), unlabelled MR-like cases
   (target; no label folder at all), held-out MR-like and T1-like test cases.
3. Trains ``source_only`` (no adaptation) and ``lmisa`` CT-like -> MR-like.
4. Predicts the held-out MR-like cases with both, and the T1-like cases (a domain never seen in
   training) with the same LMISA model, evaluates (Dice, ASSD) and prints one table.
5. Writes a visual report (overlays, training curves) and says where.

Everything goes under one folder; a second call reuses finished runs and predictions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lmisa.datasets import is_case_list, link_subset
from lmisa.errors import LmisaError
from lmisa.io import read_json_object, write_text_atomic

DEMO_SETTINGS: dict[str, Any] = {
    "data": {"spacing": [3.5, 3.5], "size": [96, 96]},
    "train": {"batch_size": 8, "epochs": 8, "steps_per_epoch": 50, "lr_decay_every": 4, "val_batches": 2, "log_every": 10},
}
VARIANTS = ("source_only", "lmisa")


@dataclass
class DemoSplit:
    source: list[str]
    target: list[str]
    test: list[str]


def _demo_split(path: Path, cases: int) -> DemoSplit:
    """The split of an earlier call in this folder (so that a second call goes on with the same cases), else a new
    one; LmisaError naming the file when it is not a demo's split."""
    if not path.exists():
        return split_phantom_cases(cases)
    saved = read_json_object(path)
    parts = {part: saved.get(part) for part in ("source", "target", "test")}
    for part, names in parts.items():
        if not is_case_list(names):
            raise LmisaError(f'{path}: not the split of an lmisa demo ("{part}" is not a list of case names); remove '
                             "it to start the demo again in this folder")
    return DemoSplit(**parts)


@dataclass
class DemoResult:
    out: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0


def split_phantom_cases(n: int) -> DemoSplit:
    """Disjoint anatomies: 3/8 source, 3/8 target, 1/4 test (at least one each)."""
    names = [f"phantom_{i:03d}" for i in range(n)]
    n_test = max(1, n // 4)
    n_src = max(1, (n - n_test) // 2)
    return DemoSplit(names[:n_src], names[n_src : n - n_test], names[n - n_test :])


def _summary_row(summary: dict[str, Any], variant: str, test: str) -> dict[str, Any]:
    per = summary["per_structure"]
    return {
        "variant": variant,
        "test": test,
        "dice": {s: per[s]["dice"]["mean"] for s in per},
        "assd": {s: per[s]["assd_vox"]["mean"] for s in per},
        "dice_mean": summary["mean_over_structures"]["dice"]["mean"],
        "assd_mean": summary["mean_over_structures"]["assd_vox"]["mean"],
    }


def run_demo(
    out: Path = Path("lmisa_demo"),
    cases: int = 16,
    seed: int = 0,
    device: str = "cpu",
    settings: dict[str, Any] | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> DemoResult:
    """Run the whole demo into ``out`` (see the module docstring); returns the table rows."""
    import os

    from lmisa.evaluation import evaluate_folders
    from lmisa.predict import load_run, predict_path
    from lmisa.report import make_report
    from lmisa.synthetic import write_phantom_datasets
    from lmisa.training import train

    console = console or Console()
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LMISA_CACHE", str(out / "cache"))
    settings = settings or DEMO_SETTINGS
    phantoms = out / "phantoms"
    split = _demo_split(out / "split.json", cases)
    if not (phantoms / "T1" / "dataset.json").exists():
        console.print(f"[bold]1/4[/] writing {cases} phantom anatomies (CT-like, MR-like, T1-like) to {phantoms}")
        write_phantom_datasets(phantoms, cases=cases, seed=seed)
    write_text_atomic(out / "split.json", json.dumps(split.__dict__, indent=2))
    data = out / "data"
    source = link_subset(phantoms / "CT", data / "CT_source", split.source)
    target = link_subset(phantoms / "MR", data / "MR_target_unlabelled", split.target, with_labels=False)
    tests = {
        "MR": link_subset(phantoms / "MR", data / "MR_test", split.test),
        "T1 (unseen)": link_subset(phantoms / "T1", data / "T1_test", split.test),
    }
    result = DemoResult(out)
    for i, variant in enumerate(VARIANTS):
        run_dir = out / "runs" / variant
        if (run_dir / "DONE").exists():
            console.print(f"[bold]2/4[/] {variant}: finished run found in {run_dir}")
            continue
        console.print(f"[bold]2/4[/] training {variant} ({i + 1}/{len(VARIANTS)}), CT-like -> MR-like, on {device}")
        resume = (run_dir / "checkpoints" / "latest.pt").exists()
        if run_dir.exists() and not resume:  # stopped before its first checkpoint: keep it aside, start again
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}"))
        train(source, target, out=run_dir, variant=None if resume else variant, device=device,
              resume=resume, progress=progress, overrides=None if resume else settings)
    console.print("[bold]3/4[/] predicting and evaluating the held-out test cases")
    for variant in VARIANTS:
        model = load_run(out / "runs" / variant, "best", device=device)
        for test_name, test_root in tests.items():
            if variant == "source_only" and test_name != "MR":
                continue
            slug = test_root.name
            pred_dir = out / "predictions" / variant / slug
            predict_path(model, test_root, pred_dir, device=device, progress=False)
            summary_path = pred_dir / "summary.json"
            if not summary_path.exists():
                evaluate_folders(pred_dir, test_root, progress=False)
            result.rows.append(_summary_row(read_json_object(summary_path), variant, test_name))
    console.print("[bold]4/4[/] writing the visual report")
    result.report = out / "report" / "index.html"
    if not result.report.exists():  # a second call keeps the first call's report
        result.report = make_report(out / "runs" / "lmisa", out / "predictions" / "lmisa" / "MR_test",
                                    tests["MR"], ref_dir=tests["MR"] / "labelsTr", out_dir=out / "report")
    result.seconds = time.perf_counter() - t0
    print_table(result, console)
    write_text_atomic(out / "results.json", json.dumps(result.rows, indent=2))
    return result


def print_table(result: DemoResult, console: Console) -> None:
    organs = list(result.rows[0]["dice"]) if result.rows else []
    short = {"liver": "liver", "right_kidney": "R kid", "left_kidney": "L kid", "spleen": "spleen"}
    table = Table(title="lmisa demo: CT-like -> MR-like phantoms, held-out cases (Dice %, ASSD in voxels)")
    table.add_column("model")
    table.add_column("tested on")
    for o in organs:
        table.add_column(short.get(o, o), justify="right")
    table.add_column("Dice", justify="right", style="bold")
    table.add_column("ASSD", justify="right")

    def num(v: float | None, nd: int = 1) -> str:
        return "-" if v is None else f"{v:.{nd}f}"

    for r in result.rows:
        table.add_row(r["variant"], r["test"], *[num(r["dice"][o]) for o in organs],
                      num(r["dice_mean"]), num(r["assd_mean"], 2))
    console.print(table)
    if result.report:
        console.print(f"report: {result.report}")
    console.print(f"total {result.seconds / 60:.1f} min; everything is in {result.out}")
