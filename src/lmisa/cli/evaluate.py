"""``lmisa evaluate``: Dice, ASSD (voxels and mm) and HD95 of a prediction folder against reference labels."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lmisa.cli.app import app, console, user_errors
from lmisa.evaluation import METRIC_TITLES, PROTOCOLS, Summary, evaluate_folders, undeclared_by_value
from lmisa.errors import LmisaError
from lmisa.metrics import METRIC_NAMES


def summary_table(summary: Summary) -> Table:
    """A rich table of the summary: one row per structure (mean ± std) and the mean over structures."""
    table = Table(title=f"{summary.protocol}: {len(summary.cases)} cases", title_justify="left")
    table.add_column("Structure")
    for m in METRIC_NAMES:
        table.add_column(METRIC_TITLES[m], justify="right")
    rows = summary.table_rows()
    for i, row in enumerate(rows):
        cells = [c.replace("**", "") for c in row]
        table.add_row(*cells, style="bold" if i == len(rows) - 1 else None, end_section=i == len(rows) - 2)
    return table


@app.command()
@user_errors
def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Folder of predicted label maps <case>.nii.gz."),
    ref: Path = typer.Option(
        ..., "--ref", help="Reference labels: a labelsTr-like folder, or a data set root with labelsTr/ (+ dataset.json)."
    ),
    labels: Optional[Path] = typer.Option(
        None, "--labels", help="dataset.json giving the structure names and values (default: the reference's, else the values found)."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder for the CSV/JSON/Markdown (default: --pred)."),
    protocol: str = typer.Option(
        "volume", "--protocol", help="volume: whole volumes; organ_slices: only the axial slices spanned by the reference labels."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Evaluate the cases that have a prediction and list the missing ones instead of failing."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes scoring cases in parallel (1: in-process; more helps only on idle cores)."),
) -> None:
    """Score predictions against reference labels: Dice (%), ASSD (voxels, as in the literature, and mm), HD95 (mm)."""
    if protocol not in PROTOCOLS:
        raise LmisaError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    summary = evaluate_folders(
        pred,
        ref,
        labels=labels,
        out_dir=out,
        protocol=protocol,
        overwrite=overwrite,
        allow_missing=allow_missing,
        workers=workers,
        progress=True,
    )
    console.print(summary_table(summary))
    for s, c in summary.counts.items():
        if c["n_missed"] or c["n_false_positive"]:
            console.print(
                f"[yellow]{s}[/]: missed in {c['n_missed']}, false positive in {c['n_false_positive']} case(s); "
                "their distances are undefined and left out of the distance means",
                highlight=False,
            )
    if summary.undeclared_by_case:
        console.print(f"[yellow]predicted label values {summary.undeclared_predicted} are not among the reference's "
                      f"labels:[/] scored as background ({pred}: {undeclared_by_value(summary.undeclared_by_case)})",
                      highlight=False, soft_wrap=True)
    if summary.missing_predictions:
        console.print(f"[yellow]missing predictions (not evaluated):[/] {', '.join(summary.missing_predictions)}", highlight=False)
    if summary.unmatched_predictions:
        console.print(f"[yellow]predictions without a reference (ignored):[/] {', '.join(summary.unmatched_predictions)}", highlight=False)
    console.print(f"wrote {', '.join(str(summary.out_dir / n) for n in ('metrics_per_case.csv', 'summary.json', 'summary.md'))}", highlight=False)
