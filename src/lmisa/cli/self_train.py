"""``lmisa self-train``: one round of self-training from a finished run (lmisa.self_training)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from lmisa.cli.app import app, console, user_errors
from lmisa.self_training import DEFAULT_VARIANT, MAPS


@app.command("self-train")
@user_errors
def self_train(
    model: list[Path] = typer.Option(
        ..., "--model", "-m",
        help="A finished run of `lmisa train` with a target data set. Given several times (one source and target): "
             "their ensemble's maps, and the first run's config and seed for the new run."),
    out: Path = typer.Option(
        ..., "--out", "-o",
        help=f"A new folder, or one an earlier call made (continued): OUT/{MAPS} (the run's maps of the target "
             "training images) and OUT/run (the new run)."),
    variant: str = typer.Option(DEFAULT_VARIANT, "--variant", help="What trains on the maps (the recipe measured: source_only)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default: the run's)."),
) -> None:
    """Self-train from a finished run: its maps (or several runs' ensembled maps) of the target's training images
    become target labels of a new run.

    No target label is read. The same command continues after an interruption."""
    from lmisa.self_training import self_train as run_self_training

    try:
        run_dir = run_self_training(model, out, variant=variant, device=device, progress=console.is_terminal)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: the same command continues ({escape(str(out))} keeps the maps written "
                      "and the last finished epoch)", highlight=False, soft_wrap=True)
        raise typer.Exit(code=130) from None
    console.print(f"[green]done[/]: self-trained run {escape(str(run_dir))} (`lmisa predict -m {escape(str(run_dir))} ...`)",
                  highlight=False, soft_wrap=True)
