"""``lmisa demo``: phantoms -> source_only and LMISA -> held-out MR-like and unseen T1-like tests."""

from __future__ import annotations

from pathlib import Path

import typer

from lmisa.cli.app import app, console, user_errors


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("lmisa_demo"), "--out", "-o", help="Folder for everything the demo writes (reused if it exists)."),
    cases: int = typer.Option(16, "--cases", help="Phantom anatomies to generate."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
) -> None:
    """Show LMISA on built-in phantoms in minutes on a CPU: no data of yours needed."""
    from lmisa.demo import run_demo

    run_demo(out=out, cases=cases, seed=seed, device=device, console=console)
