"""``lmisa check DATASET [DATASET ...]``: check nnU-Net-v2 raw data sets up front, listing every problem."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lmisa.cli.app import app, console, user_errors
from lmisa.datasets import Domain, check_domain
from lmisa.orientation import orientation_problems


@app.command()
@user_errors
def check(
    datasets: list[Path] = typer.Argument(..., metavar="DATASET", help="nnU-Net v2 raw data set folders (dataset.json, imagesTr, labelsTr).", show_default=False),
    no_labels: bool = typer.Option(False, "--no-labels", help="Labels are optional and not read (a target domain)."),
) -> None:
    """Check data sets: dataset.json, file pairing and names, and every image and label read in full; and that
    their voxel axes run along one set of anatomical axes, as training them together needs."""
    total_problems = 0
    images: list[Path] = []  # of the data sets without problems: one set of anatomical axes over them all
    for path in datasets:
        if console.is_terminal:
            with Progress(
                TextColumn("checking {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as bar:
                task = bar.add_task(escape(path.name or str(path)), total=None)
                problems = check_domain(
                    path, require_labels=not no_labels, progress=lambda done, total: bar.update(task, completed=done, total=total)
                )
        else:
            problems = check_domain(path, require_labels=not no_labels)
        for problem in problems:
            console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        if problems:
            total_problems += len(problems)
            noun = "problem" if len(problems) == 1 else "problems"
            console.print(f"[bold red]{len(problems)} {noun}[/] in {escape(str(path))}", highlight=False, soft_wrap=True)
        else:
            domain = Domain.open(path)
            images += [c.image for c in domain.cases("train")]
            n_train, n_test = len(domain.cases("train")), len(domain.cases("test"))
            labels = ", ".join(f"{v}={escape(k)}" for k, v in sorted(domain.labels.items(), key=lambda kv: kv[1]))
            test = f" (+{n_test} test)" if n_test else ""
            console.print(
                f"[green]ok: {n_train} cases{test}, labels {labels}[/] in {escape(str(path))}", highlight=False, soft_wrap=True
            )
    axes = orientation_problems(images)  # what lmisa train refuses when these data sets train together
    for problem in axes:
        console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    total_problems += len(axes)
    if total_problems:
        raise typer.Exit(code=1)
