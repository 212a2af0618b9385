"""``lmisa`` command line: one module per command, each registering itself on ``app``."""

from __future__ import annotations

import importlib

from lmisa.cli.app import app

# Each name is a module of lmisa.cli that registers one command (or a command group) on ``app``.
COMMAND_MODULES = (
    "check", "preprocess", "synth", "convert", "train", "self_train", "predict", "evaluate", "volumes", "ceiling", "demo", "export",
)

for _name in COMMAND_MODULES:
    try:
        importlib.import_module(f"lmisa.cli.{_name}")
    except ModuleNotFoundError as _exc:  # a command not written yet
        if _exc.name != f"lmisa.cli.{_name}":
            raise


def main() -> None:
    """Entry point of the ``lmisa`` console script."""
    app()


__all__ = ["app", "main"]
