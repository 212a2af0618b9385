"""``lmisa convert kits19|mmwhs|chaos SRC DST``: downloaded data sets to the nnU-Net-v2 raw layout.

A typer sub-app registered on ``app``; one command per source format. Each shows a progress bar,
then a summary: the cases converted, those skipped (unlabelled) and those that failed (one line
each, naming the case and the file). Exit code 1 if any case failed or nothing was converted.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Callable

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lmisa.cli.app import app, console, err_console, user_errors
from lmisa.convert.common import ConversionReport

convert_app = typer.Typer(
    name="convert",
    help="Convert a downloaded data set (KiTS19, MM-WHS 2017, CHAOS) to lmisa's nnU-Net-v2 raw layout.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(convert_app, name="convert")


class MMWHSModality(str, Enum):
    ct = "ct"
    mr = "mr"


class CHAOSModality(str, Enum):
    t2spir = "t2spir"
    t1in = "t1in"
    t1out = "t1out"
    ct = "ct"


SRC_ARG = typer.Argument(..., help="The downloaded data set folder.", show_default=False)
DST_ARG = typer.Argument(..., help="Output folder (nnU-Net-v2 raw: dataset.json, imagesTr/, labelsTr/).", show_default=False)
OVERWRITE_OPT = typer.Option(False, "--overwrite", help="Replace existing case files and dataset.json in DST.")


def _run(title: str, convert: Callable[..., ConversionReport], **kwargs) -> None:
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    task = None

    def progress(done: int, total: int, name: str) -> None:
        nonlocal task
        if task is None:  # started only once the sources are found and DST is checked
            bar.start()
            task = bar.add_task(title, total=total)
        bar.update(task, total=total, completed=done, description=f"{title} {name}".rstrip())

    try:
        report = convert(progress=progress, **kwargs)
    finally:
        if task is not None:
            bar.stop()
    _summary(report)


def _summary(report: ConversionReport) -> None:
    n = len(report.converted)
    console.print(f"Converted {n} case(s) into {escape(str(report.dst))}", highlight=False)
    if report.dataset_json is not None:
        labels = ", ".join(f"{k}={v}" for k, v in report.labels.items())
        console.print(f"  {escape(str(report.dataset_json))}: numTraining {n}, labels {escape(labels)}", highlight=False)
    if report.skipped:
        console.print(f"[yellow]Skipped {len(report.skipped)} case(s):[/]")
        for name, reason in report.skipped.items():
            console.print(f"  {escape(name)}: {escape(reason)}", highlight=False)
    if report.stale:
        console.print(
            f"[yellow]warning:[/] {len(report.stale)} file(s) in DST were not written by this conversion and are "
            f"not counted in numTraining (e.g. {escape(report.stale[0])})",
            highlight=False,
        )
    if report.failed:
        err_console.print(f"[bold red]Failed {len(report.failed)} case(s):[/]")
        for message in report.failed.values():
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)
    if not report.converted:
        err_console.print("[bold red]error:[/] nothing converted (no labelled case); dataset.json not written")
        raise typer.Exit(code=1)


@convert_app.command("kits19")
@user_errors
def kits19(
    src: Path = SRC_ARG,
    dst: Path = DST_ARG,
    keep_tumour: bool = typer.Option(False, "--keep-tumour", help="Keep tumour as label 2 (default: merged into kidney 1)."),
    overwrite: bool = OVERWRITE_OPT,
) -> None:
    """KiTS19: SRC/case_XXXXX/{imaging,segmentation}.nii.gz -> cases case_XXXXX (kidney 1 [, tumour 2])."""
    from lmisa.convert.kits19 import convert_kits19

    _run("kits19", convert_kits19, src=src, dst=dst, keep_tumour=keep_tumour, overwrite=overwrite)


@convert_app.command("mmwhs")
@user_errors
def mmwhs(
    src: Path = SRC_ARG,
    dst: Path = DST_ARG,
    modality: MMWHSModality = typer.Option(
        ..., "--modality", case_sensitive=False, help="Which modality to convert (one data set per call).", show_default=False
    ),
    all_structures: bool = typer.Option(
        False, "--all-structures", help="Keep all seven structures as 1..7 (default: MYO, LA, LV, AA as 1..4)."
    ),
    overwrite: bool = OVERWRITE_OPT,
) -> None:
    """MM-WHS 2017: SRC/{ct,mr}_train_XXXX_{image,label}.nii.gz -> cases ct_XXXX / mr_XXXX."""
    from lmisa.convert.mmwhs import convert_mmwhs

    _run(
        f"mmwhs {modality.value}",
        convert_mmwhs,
        src=src,
        dst=dst,
        modality=modality.value,
        all_structures=all_structures,
        overwrite=overwrite,
    )


@convert_app.command("chaos")
@user_errors
def chaos(
    src: Path = SRC_ARG,
    dst: Path = DST_ARG,
    modality: CHAOSModality = typer.Option(
        ..., "--modality", case_sensitive=False, help="Which series to convert (one data set per call).", show_default=False
    ),
    overwrite: bool = OVERWRITE_OPT,
) -> None:
    """CHAOS: SRC/{MR,CT}/<patient>/... DICOM + Ground PNG masks -> cases chaos_<patient>."""
    from lmisa.convert.chaos import convert_chaos

    _run(f"chaos {modality.value}", convert_chaos, src=src, dst=dst, modality=modality.value, overwrite=overwrite)
