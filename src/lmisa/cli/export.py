"""``lmisa export RUN_DIR OUT``: TorchScript (+ ONNX when available) and a model.json describing the input."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from lmisa.cli.app import app, console, user_errors
from lmisa.errors import LmisaError


@app.command()
@user_errors
def export(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="Run folder made by `lmisa train`.", show_default=False),
    out: Path = typer.Argument(..., metavar="OUT", help="Output folder for model.ts, model.onnx, model.json.", show_default=False),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or latest."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing model files."),
    no_onnx: bool = typer.Option(False, "--no-onnx", help="Do not try the ONNX export."),
) -> None:
    """Export the segmentation network (logits) for use without lmisa; model.json says how to prepare input."""
    from lmisa.export import export_run

    if checkpoint not in ("best", "latest"):
        raise LmisaError(f"--checkpoint must be best or latest, got {checkpoint!r}")
    result = export_run(run_dir, out, which=checkpoint, overwrite=overwrite, onnx=not no_onnx)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    console.print(f"[green]wrote[/] {escape(', '.join(str(p) for p in result.files))}", highlight=False, soft_wrap=True)
