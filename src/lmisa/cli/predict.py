"""``lmisa predict``: label maps for NIfTI files, folders, DICOM series or data sets, with a trained run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from lmisa.cli.app import app, console, err_console, user_errors
from lmisa.errors import LmisaError


@app.command()
@user_errors
def predict(
    model: list[Path] = typer.Option(
        ..., "--model", "-m",
        help="Run folder made by `lmisa train` (or a checkpoint .pt). Given several times: an ensemble, the runs' "
             "probabilities averaged (they must prepare images alike, e.g. seeds of one configuration).",
    ),
    input: Path = typer.Option(
        ..., "--input", "-i",
        help="A NIfTI file, a folder of NIfTI files, a DICOM series folder, or an nnU-Net data set root (imagesTs, else imagesTr).",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder: <case>.nii.gz label maps (uint8, the input's geometry)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (default: skip them)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best (lowest source validation loss) or latest."),
    no_postprocess: bool = typer.Option(
        False, "--no-postprocess",
        help="Keep every connected component and every organ's full extent (default: the run's post settings).",
    ),
    extent_margin: float | None = typer.Option(
        None, "--extent-margin", min=0.0,
        help="Cap each organ's extent through the slices at this many times its longest in the source's "
             "training labels; 0: no cap (default: the run's post.extent_margin).",
    ),
    tta: bool | None = typer.Option(
        None, "--tta/--no-tta",
        help="Average over 5 rotated / zoomed views of each slice (about 4.5x slower; default: the run's post.tta, off unless the run set it).",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Slices per forward pass (default: 8 on a CPU, 32 on a GPU)."),
    save_probabilities: bool = typer.Option(
        False, "--save-probabilities",
        help="Also write each case's class probabilities (before post-processing) as OUTPUT/<case>.npz: float16 "
             "(C, Z, Y, X) on the image's grid ((C, Y, X) for a single slice), with its affine and label table "
             "(lmisa.probabilities). Existing files are kept unless --overwrite, so a label map and its .npz may "
             "come from different runs."),
    report: bool = typer.Option(False, "--report", help="Also write a visual report (images and predictions) into OUTPUT/report."),
) -> None:
    """Segment volumes with a trained run; exit code 1 if any input failed."""
    from lmisa.ensemble import load_ensemble
    from lmisa.predict import predict_path

    if checkpoint not in ("best", "latest"):
        raise LmisaError(f"--checkpoint must be best or latest, got {checkpoint!r}")
    if no_postprocess and extent_margin:
        raise LmisaError("--no-postprocess keeps every organ's full extent: leave out --extent-margin")
    loaded = load_ensemble(model, which=checkpoint, device=device)
    result = predict_path(
        loaded,
        input,
        output,
        overwrite=overwrite,
        progress=console.is_terminal,
        largest_component=False if no_postprocess else None,
        batch_size=batch_size,
        tta=tta,
        extent_margin=0.0 if no_postprocess else extent_margin,
        save_probabilities=save_probabilities,
    )
    for path, msg in result.failed:
        err_console.print(f"[red]{escape(str(path))}: {escape(msg)}[/]", highlight=False, soft_wrap=True)
    if report:
        _write_report(model[0], output, input, overwrite)  # training curves: the first run's
    style = "red" if result.failed else ("green" if result.written else "yellow")
    console.print(f"[{style}]{escape(result.summary())}[/] ({result.seconds:.1f} s)", highlight=False, soft_wrap=True)
    if result.failed:
        raise typer.Exit(code=1)


def _write_report(run: Path, output: Path, input: Path, overwrite: bool) -> None:
    from lmisa.report import INDEX_HTML, make_report

    out_dir = output / "report"
    if (out_dir / INDEX_HTML).exists() and not overwrite:
        console.print(f"[yellow]{escape(str(out_dir / INDEX_HTML))}: exists, skipped (use --overwrite)[/]", highlight=False)
        return
    run_dir = run if run.is_dir() else None
    try:
        index = make_report(run_dir, output, input, out_dir=out_dir, overwrite=overwrite)
    except LmisaError as exc:
        err_console.print(f"[red]report not written: {escape(str(exc))}[/]", highlight=False, soft_wrap=True)
        return
    console.print(f"report: {escape(str(index))}", highlight=False)
