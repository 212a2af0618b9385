"""``lmisa preprocess``: resample + MLNGM every case of a data set into a cache (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lmisa.cli.app import app, console, user_errors


@app.command()
@user_errors
def preprocess(
    dataset: Path = typer.Argument(..., help="nnU-Net raw data set (or a folder of NIfTI images)."),
    out: Path = typer.Argument(..., help="Cache folder: one <case>.npz per case, plus plans.json."),
    spacing: Optional[tuple[float, float]] = typer.Option(None, "--spacing", metavar="SY SX", help="In-plane spacing in mm, two numbers (--spacing 1.5 1.5); default: the data set's median."),
    size: tuple[int, int] = typer.Option((256, 256), "--size", help="In-plane size after resampling (crop/pad)."),
    input_kind: str = typer.Option("mlngm", "--input", help="mlngm or raw (normalised intensities)."),
    levels: int = typer.Option(4, "--levels", help="MLNGM levels."),
    no_labels: bool = typer.Option(False, "--no-labels", help="Do not read labels (a target domain)."),
    # "at most 8" is lmisa.preprocess.MAX_CACHE_WORKERS, written out: importing it would load torch for --help
    workers: Optional[int] = typer.Option(None, "--workers", "-j",
                                          help="Processes; default: the usable cores, at most 8."),
) -> None:
    """Prepare every case once (resample in-plane, MLNGM, crop/pad); cases already cached are skipped.

    A cache of its own, for inspection or other tools: `lmisa train` keeps its own cache under $LMISA_CACHE."""
    from lmisa.datasets import Domain, check_domain, raise_problems
    from lmisa.errors import LmisaError
    from lmisa.preprocess import Plans, build_cache, check_cache_dir, median_inplane_spacing

    if input_kind not in ("mlngm", "raw"):
        raise LmisaError(f"--input {input_kind!r}: choose mlngm or raw")
    if (dataset / "dataset.json").exists() or (dataset / "imagesTr").is_dir():  # an nnU-Net data set: checked in full
        with_labels = not no_labels and (dataset / "labelsTr").is_dir()
        raise_problems(check_domain(dataset, require_labels=with_labels), str(dataset))
        domain = Domain.open(dataset)
    else:
        domain = Domain.from_images(dataset)
    cases = domain.cases()
    if not cases:
        raise LmisaError(f"{dataset}: no images found")
    plans = Plans(
        spacing=tuple(spacing) if spacing else median_inplane_spacing(c.image for c in cases),
        size=tuple(size),
        input=input_kind,
        mlngm_levels=levels,
        labels=dict(domain.labels),
    )
    jobs = [(c.name, c.image, None if no_labels else c.label) for c in cases]
    check_cache_dir(out, plans, [c.name for c in cases], with_labels=any(label is not None for _, _, label in jobs))
    files, errors = build_cache(jobs, out, plans, workers=workers)
    for err in errors:
        console.print(f"[red]failed:[/] {err}", highlight=False)
    console.print(f"{len(files)} of {len(cases)} cases cached in {out} (spacing {plans.spacing}, size {plans.size})")
    if errors:
        raise typer.Exit(code=1)
