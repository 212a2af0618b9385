"""``lmisa train``: one LMISA (or variant) run from a labelled source and an unlabelled target."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lmisa.cli.app import app, console, user_errors
from lmisa.config import VARIANTS
from lmisa.errors import LmisaError
from lmisa.training.run import CKPT_DIR, LATEST


@app.command()
@user_errors
def train(
    source: Optional[Path] = typer.Option(None, "--source", "-s", help="Labelled source data set (nnU-Net raw layout); required to train.", show_default=False),
    target: Optional[Path] = typer.Option(None, "--target", "-t", help="Unlabelled target data set (its labels are never read, except by --variant supervised)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config; unset keys keep the defaults."),
    dims: Optional[int] = typer.Option(None, "--dims", help="2 (slices) or 3 (patches)."),
    variant: Optional[str] = typer.Option(
        None, "--variant", show_default=False,
        help=f"One of: {', '.join(VARIANTS)}. Default: the --config file's variant, else lmisa."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<source>-to-<target>-<variant>-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override train.epochs."),
    steps: Optional[int] = typer.Option(None, "--steps-per-epoch", help="Override train.steps_per_epoch."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override train.seed."),
    pseudo_labels: Optional[Path] = typer.Option(
        None, "--pseudo-labels",
        help="Self-training: a folder of label maps of the target training cases made by a trained run "
             "(`lmisa predict -m RUN -i TARGET/imagesTr -o FOLDER`); sets data.pseudo_labels."),
    dry_run: bool = typer.Option(
        False, "--dry-run",
        help="Make the checks a new run makes before it caches any data (options, device, --out, data sets read in "
             "full, label tables, voxel axes, pseudo-label maps), then exit; nothing is written. A few checks need "
             "the cached data and come when training starts."),
    print_config: bool = typer.Option(
        False, "--print-config",
        help="Print the config these options resolve to (defaults, --config, --variant, overrides) as YAML and exit; "
             "nothing is read or trained. Save it, edit it, pass it back with --config."),
) -> None:
    """Train LMISA: MLNGM input, segmentation + reconstruction, shape critic."""
    from lmisa.training import resolve_config
    from lmisa.training import train as run_training

    overrides: dict = {}
    for key, value in (("epochs", epochs), ("steps_per_epoch", steps), ("seed", seed)):
        if value is not None:
            overrides.setdefault("train", {})[key] = value
    if pseudo_labels is not None:
        overrides.setdefault("data", {})["pseudo_labels"] = str(pseudo_labels)
    if print_config and dry_run:
        raise LmisaError("--print-config and --dry-run: choose one (--print-config reads no data)")
    if print_config:
        typer.echo(resolve_config(config, variant, dims, device, overrides or None).to_yaml(), nl=False)
        return
    if source is None:
        raise LmisaError("--source is required: the labelled data set to train on")
    if dry_run:
        _dry_run(source, target, out, config, variant, dims, device, overrides or None, resume)
        return
    if resume and overrides:
        console.print("[yellow]note:[/] --resume keeps the run's saved config; --epochs/--steps-per-epoch/--seed/"
                      "--pseudo-labels are ignored")
    try:
        run_dir = run_training(
            source, target, out=out, config=config, variant=None if resume else variant,
            dims=dims, device=device, resume=resume, overrides=overrides or None,
        )
    except KeyboardInterrupt as exc:
        run_dir = getattr(exc, "run_dir", None) or out
        if run_dir is None:  # stopped before a run folder was chosen
            console.print("[yellow]interrupted[/] before training started: nothing to resume", soft_wrap=True)
        elif (Path(run_dir) / CKPT_DIR / LATEST).exists():
            console.print(f"[yellow]interrupted[/]: the last finished epoch is saved; continue with "
                          f"`lmisa train --source {source} {'--target ' + str(target) + ' ' if target else ''}"
                          f"--out {run_dir} --resume`", soft_wrap=True)
        else:
            console.print(f"[yellow]interrupted[/] before the first epoch ended: nothing to resume; the same "
                          f"command starts {run_dir} again", soft_wrap=True)
        raise typer.Exit(code=130) from None
    console.print(f"[green]done[/]: run folder {run_dir}")


def _dry_run(source: Path, target: Optional[Path], out: Optional[Path], config: Optional[Path], variant: Optional[str],
             dims: Optional[int], device: Optional[str], overrides: Optional[dict], resume: bool) -> None:
    """``--dry-run``: a new run's checks (lmisa.training.check_run), then one line on what would train."""
    from lmisa.datasets import Domain
    from lmisa.training import check_run

    if resume:
        raise LmisaError("--dry-run checks the inputs of a new run; a resume checks them itself when it starts")
    cfg = check_run(source, target, config, variant, dims, device, overrides, out=out)
    n_source = len(Domain.open(source).cases("train"))
    n_target = len(Domain.open(target).cases("train")) if target is not None else 0
    what = f"{n_source} source cases" + (f", {n_target} target cases" if target is not None else "")
    if cfg.data.pseudo_labels:
        what += f", pseudo-labels {cfg.data.pseudo_labels}"
    console.print(f"[green]ok[/]: inputs checked for variant {cfg.variant} ({what}); nothing written",
                  highlight=False, soft_wrap=True)
