"""The learning-rate schedule of a run (``train.lr_schedule``), stepped once per epoch.

``step`` is the paper's: x ``lr_decay`` every ``lr_decay_every`` epochs. ``poly`` is nnU-Net v2's:
x (1 - epoch / epochs) ** 0.9, so that the last epochs take small steps whatever the run's length.

Example:
    >>> import torch
    >>> from lmisa.config import TrainConfig
    >>> opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sched = lr_scheduler(opt, TrainConfig(lr_schedule="poly", epochs=4))
    >>> lrs = []
    >>> for _ in range(4):
    ...     lrs.append(round(opt.param_groups[0]["lr"], 3)); opt.step(); sched.step()
    >>> lrs
    [1.0, 0.772, 0.536, 0.287]
"""

from __future__ import annotations

import torch

from lmisa.config import TrainConfig

POLY_EXPONENT = 0.9  # nnU-Net v2's PolyLRScheduler


def lr_scheduler(opt: torch.optim.Optimizer, train: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler ``train.lr_schedule`` names, for ``opt``."""
    if train.lr_schedule == "poly":
        epochs = max(1, train.epochs)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda epoch: max(0.0, 1.0 - epoch / epochs) ** POLY_EXPONENT
        )
    return torch.optim.lr_scheduler.StepLR(opt, step_size=train.lr_decay_every, gamma=train.lr_decay)
