"""The typer application object and the error boundary shared by every command."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import typer
from rich.console import Console

from lmisa.errors import LmisaError

app = typer.Typer(
    name="lmisa",
    help="Cross-modality segmentation by unsupervised domain adaptation (LMISA).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable)


USER_OS_ERRORS = (FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def user_errors(func: F) -> F:
    """Turn LmisaError and the file errors a user can cause (USER_OS_ERRORS) into one red line and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (LmisaError, *USER_OS_ERRORS) as exc:
            err_console.print(f"[bold red]error:[/] {_one_line(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def _one_line(exc: Exception) -> str:
    """An OS error as "PATH: reason" (the destination, for a rename) rather than "[Errno N] reason: 'PATH'"."""
    if isinstance(exc, OSError) and exc.strerror and (exc.filename2 or exc.filename):
        return f"{exc.filename2 or exc.filename}: {exc.strerror}"
    return str(exc)


def _print_version(value: bool) -> None:
    if value:
        from lmisa import __version__

        console.print(f"lmisa {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version."),
) -> None:
    """Cross-modality segmentation by unsupervised domain adaptation (LMISA)."""
