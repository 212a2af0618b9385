"""``lmisa volumes``: organ sizes of predictions against reference labels, a check that needs no target label."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lmisa.cli.app import app, console, user_errors
from lmisa.errors import LmisaError
from lmisa.evaluation import undeclared_by_value
from lmisa.io import write_text_atomic
from lmisa.volumes import PLAUSIBLE_RATIO, compare_volumes


@app.command()
@user_errors
def volumes(
    pred: Path = typer.Option(..., "--pred", help="Folder of predicted label maps, e.g. `lmisa predict` on the target's images."),
    ref: Path = typer.Option(..., "--ref", help="Reference labels of other cases (the SOURCE data set, or its labelsTr/)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="dataset.json naming the labels (default: the reference's)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the numbers to this JSON file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Median organ volumes (mL) of the predictions against the references: an adapted model that erases
    (ratio << 1) or spills (>> 1) organs on an unlabelled target shows here."""
    if out is not None and out.is_dir():
        raise LmisaError(f"{out}: is a folder; --out takes a JSON file name")
    if out is not None and out.exists() and not overwrite:
        raise LmisaError(f"{out}: exists; pass --overwrite to replace it")
    check = compare_volumes(pred, ref, labels)
    table = Table(title=f"{check.n_predictions} predictions against {check.n_references} references", title_justify="left")
    for col in ("Structure", "predicted mL", "reference mL", "ratio"):
        table.add_column(col, justify="left" if col == "Structure" else "right")
    bad = set(check.implausible)
    for name, o in check.organs.items():
        table.add_row(name, f"{o['pred_ml']:.1f}", f"{o['ref_ml']:.1f}", f"{o['ratio']:.2f}", style="yellow" if name in bad else None)
    console.print(table)
    console.print(f"score (mean |log ratio|, 0 = reference sizes): {check.score:.3f}", highlight=False)
    if bad:
        lo, hi = PLAUSIBLE_RATIO
        console.print(f"[yellow]outside {lo}-{hi} x the reference size:[/] {', '.join(sorted(bad))}", highlight=False)
    if check.undeclared_by_case:
        console.print(f"[yellow]predicted label values no organ has, not counted:[/] {pred}: "
                      f"{undeclared_by_value(check.undeclared_by_case)}", highlight=False, soft_wrap=True)
    if out is not None:
        write_text_atomic(out, json.dumps(check.to_dict(), indent=2) + "\n")
        console.print(f"wrote {out}", highlight=False)
