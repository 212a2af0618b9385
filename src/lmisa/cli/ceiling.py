"""``lmisa ceiling DATASET``: the Dice a perfect network could reach on each training grid, from labels alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lmisa.cli.app import app, console, user_errors
from lmisa.errors import LmisaError
from lmisa.evaluation import PROTOCOLS
from lmisa.grid_ceiling import KINDS, CeilingTable, Grid, grid_ceiling
from lmisa.io import write_text_atomic

# the field of view of the abdominal runs (384-400 mm) at five spacings
DEFAULT_GRIDS = ("4:96", "3:128", "2.5:160", "2:192", "1.5:256")


def ceiling_table(table: CeilingTable, kind: str, protocol: str) -> Table:
    """One row per grid: mean Dice over organs, then each organ's mean over cases."""
    out = Table(title=f"{kind} ceiling, {protocol}: Dice (%) of the labels taken to each grid and back", title_justify="left")
    for col in ("grid", "mean", *table.organs):
        out.add_column(col, justify="left" if col == "grid" else "right")
    for grid in table.rows:
        organs = table.organ_means(grid, kind, protocol)
        out.add_row(str(grid), f"{table.mean(grid, kind, protocol):.2f}", *(f"{organs[o]:.2f}" for o in table.organs))
    return out


@app.command()
@user_errors
def ceiling(
    dataset: Path = typer.Argument(..., metavar="DATASET", help="nnU-Net v2 raw data set with labelsTr/ (the SOURCE: no target label is needed).", show_default=False),
    grid: list[str] = typer.Option(list(DEFAULT_GRIDS), "--grid", help="SPACING:SIZE, in-plane mm and frame pixels (data.spacing, data.size); repeat for several."),
    protocol: str = typer.Option("organ_slices", "--protocol", help="organ_slices or volume (both are written to --out)."),
    all_kinds: bool = typer.Option(False, "--all", help="Also the argmax ceiling (training labels made nnU-Net's way) and the soft one (area fractions)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write every number (per case) to this JSON file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """The Dice a perfect network could reach on each training grid: labels taken to the grid and back."""
    if protocol not in PROTOCOLS:
        raise LmisaError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if out is not None and out.exists() and not overwrite:
        raise LmisaError(f"{out}: exists; pass --overwrite to replace it")
    grids = [Grid.parse(g) for g in grid]
    kinds = KINDS if all_kinds else ("hard",)
    if console.is_terminal:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task(escape(f"ceiling of {dataset.name}"), total=None)
            table = grid_ceiling(dataset, grids, kinds, progress=lambda done, total: bar.update(task, completed=done, total=total))
    else:
        table = grid_ceiling(dataset, grids, kinds)
    for kind in kinds:
        console.print(ceiling_table(table, kind, protocol))
    if out is not None:
        write_text_atomic(out, json.dumps(table.to_dict(), indent=2) + "\n")
        console.print(f"wrote {escape(str(out))}", highlight=False)
