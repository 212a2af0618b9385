"""``progress.png``: the losses and the source validation of a run, one point per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def plot_progress(history: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    epochs = [row["epoch"] for row in history]
    loss_keys = [k for k in history[0] if k.startswith("loss_")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    tmp = path.with_suffix(".tmp.png")
    try:
        _draw(axes, epochs, loss_keys, history)
        fig.tight_layout()
        fig.savefig(tmp, dpi=80)
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


def _draw(axes: Any, epochs: list[int], loss_keys: list[str], history: Sequence[dict[str, Any]]) -> None:
    for k in loss_keys:
        axes[0].plot(epochs, [row.get(k, float("nan")) for row in history], label=k[5:])
    axes[0].set_yscale("symlog", linthresh=1e-2)
    axes[0].set_title("training losses (generator terms unweighted)")
    axes[0].legend(fontsize=8)
    axes[1].plot(epochs, [row.get("val_loss", float("nan")) for row in history], label="source val loss")
    axes[1].set_title("source validation loss (model selection)")
    axes[2].plot(epochs, [row.get("val_dice", float("nan")) for row in history], label="source val Dice")
    axes[2].set_title("source validation Dice (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
