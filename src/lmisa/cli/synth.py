"""``lmisa synth OUT --cases N --seed S``: write the synthetic CT-/MR-/T1-like phantom data sets."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lmisa.cli.app import app, console, user_errors


@app.command()
@user_errors
def synth(
    out: Path = typer.Argument(..., help="Output folder: one nnU-Net v2 raw data set per appearance goes in OUT/CT, OUT/MR, OUT/T1.", show_default=False),
    cases: int = typer.Option(6, "--cases", min=1, help="Number of phantom anatomies (each written in every appearance)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same data."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing phantom files (and drop stale phantom cases)."),
) -> None:
    """Write synthetic abdominal phantoms (liver, kidneys, spleen) in CT-, MR(T2)- and T1-like appearances.

    The same case name is the same anatomy in every appearance; for a domain adaptation experiment
    take disjoint cases for source and target.
    """
    from lmisa.synthetic import write_phantom_datasets

    start = time.perf_counter()
    with Progress(
        TextColumn("synthesising phantoms"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("phantoms", total=cases)
        roots = write_phantom_datasets(
            out, cases=cases, seed=seed, overwrite=overwrite, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    elapsed = time.perf_counter() - start
    console.print(f"[green]wrote {cases} phantom case(s) x {len(roots)} appearances in {elapsed:.1f} s[/]", highlight=False)
    for name, root in roots.items():
        console.print(f"  {escape(name):3s} {escape(str(root))}", highlight=False, soft_wrap=True)
