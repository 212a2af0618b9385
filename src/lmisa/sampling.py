"""Batches of 2D slices drawn on the device, with no loader process and no host sync.

All slices of a domain live in one tensor (float16; a data set of this size is a few hundred MB), so
a batch is an index draw plus a gather. Source slices are drawn foreground-aware (a fixed share among
slices that hold a label); target slices uniformly (or among given ones, ``restrict_to``); the critic's
real label maps uniformly or with a given share of organ-bearing slices (``match_organ_fraction``,
``loss.real_prior``). With ``context > 0`` each sample carries its neighbouring slices of the same case
as extra channels (2.5D).

In 3D (``patch=(d, h, w)``) a batch is a set of patches: a centre slice is drawn as above (so source
patches are foreground-aware too), the patch spans ``d`` slices of that case around it (indices
clamped inside the case) and a random ``h x w`` window of the frame.

In distributed training each rank draws with its own seeded generator: sampling with replacement
from independent streams plays the role of a DistributedSampler.
"""

from __future__ import annotations

import torch

from lmisa.preprocess import SliceSet


def organ_pixel_counts(labels: torch.Tensor) -> torch.Tensor:
    """Foreground pixels of each label map ``(N, ...)`` (``(N,)``)."""
    return (labels > 0).flatten(1).sum(1)


def organ_slices(labels: torch.Tensor, min_pixels: int = 1) -> torch.Tensor:
    """Which label maps ``(N, ...)`` hold at least ``min_pixels`` foreground pixels (bool ``(N,)``)."""
    return organ_pixel_counts(labels) >= min_pixels


def min_organ_pixels(size: tuple[int, int]) -> int:
    """A label map "holds an organ" from this many foreground pixels on (0.1 % of the ``(H, W)`` frame):
    a few stray pixels of a prediction do not count."""
    h, w = size
    return max(1, round(1e-3 * h * w))


def organ_pixel_quantile(labels: torch.Tensor, q: float, min_pixels: int = 1) -> int:
    """The ``q`` quantile of the foreground pixel counts of the label maps ``(N, H, W)`` that hold an
    organ (at least ``min_pixels``), and never below ``min_pixels``: a size below which a map shows only
    the tip of an organ (``loss.critic_organ_quantile``). One host sync; ``min_pixels`` if no map holds one."""
    counts = organ_pixel_counts(labels)
    counts = counts[counts >= min_pixels]
    if q <= 0 or counts.numel() == 0:
        return min_pixels
    return max(min_pixels, int(torch.quantile(counts.float(), q).ceil()))  # counts <= H * W: exact in float32


class SliceSampler:
    """Draw ``(x, y)`` batches from a SliceSet: x ``(B, 2c+1, H, W)`` float32, y ``(B, H, W)`` long or None."""

    def __init__(
        self,
        slices: SliceSet,
        batch_size: int,
        generator: torch.Generator,
        context: int = 0,
        foreground_fraction: float = 0.0,
        with_labels: bool = True,
        patch: tuple[int, int, int] | None = None,
    ) -> None:
        self.slices = slices
        self.patch = patch
        self.batch_size = batch_size
        self.generator = generator
        self.device = slices.inputs.device
        self.offsets = torch.arange(-context, context + 1, device=self.device)
        self.with_labels = with_labels and slices.labels is not None
        self.n = len(slices)
        self.fg_index = None
        self.fg_fraction = 0.0
        if self.with_labels and foreground_fraction > 0:
            index = torch.nonzero(organ_slices(slices.labels)).flatten()  # one sync at set-up, none per batch
            if index.numel() > 0:
                self.fg_index = index
                self.fg_fraction = foreground_fraction
        self.organ_split: tuple[torch.Tensor, torch.Tensor, float] | None = None
        self.allowed: torch.Tensor | None = None  # restrict_to

    def restrict_to(self, index: torch.Tensor | None) -> None:
        """Draw uniformly among the slices ``index`` only (None: among all again)."""
        if index is not None and index.numel() == 0:
            raise ValueError("restrict_to needs at least one slice")
        self.allowed = None if index is None else index.to(self.device)

    def match_organ_fraction(self, fraction: float, min_pixels: int = 1) -> bool:
        """Draw slices that hold a label (at least ``min_pixels``) with probability ``fraction``, the
        others otherwise, instead of uniformly (one host sync, here). False, and sampling stays
        uniform, when the slices are all of one kind."""
        if not self.with_labels:
            raise ValueError("match_organ_fraction needs labelled slices")
        has = organ_slices(self.slices.labels, min_pixels)
        fg, bg = torch.nonzero(has).flatten(), torch.nonzero(~has).flatten()
        if not (fg.numel() and bg.numel()):
            return False
        self.organ_split = (fg, bg, float(fraction))
        return True

    def draw_indices(self) -> torch.Tensor:
        g, b = self.generator, self.batch_size
        if self.organ_split is not None:
            fg, bg, fraction = self.organ_split
            pick_fg = fg[torch.randint(0, fg.numel(), (b,), generator=g, device=self.device)]
            pick_bg = bg[torch.randint(0, bg.numel(), (b,), generator=g, device=self.device)]
            return torch.where(torch.rand(b, generator=g, device=self.device) < fraction, pick_fg, pick_bg)
        if self.allowed is not None:
            return self.allowed[torch.randint(0, self.allowed.numel(), (b,), generator=g, device=self.device)]
        idx = torch.randint(0, self.n, (b,), generator=g, device=self.device)
        if self.fg_index is not None:
            pick = torch.randint(0, self.fg_index.numel(), (b,), generator=g, device=self.device)
            use_fg = torch.rand(b, generator=g, device=self.device) < self.fg_fraction
            idx = torch.where(use_fg, self.fg_index[pick], idx)
        return idx

    def gather(
        self, idx: torch.Tensor, slices: SliceSet | None = None, random_window: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Inputs and labels around the slices ``idx`` of ``slices`` (default: this sampler's own).

        2D: the slices with their neighbours as channels. 3D: patches centred on them, in a random
        in-plane window (``random_window``) or the centred one (validation).
        """
        slices = slices if slices is not None else self.slices
        with_labels = self.with_labels and slices.labels is not None
        if self.patch is None:
            return gather_slices(slices, idx, self.offsets, with_labels)
        h, w = slices.inputs.shape[-2:]
        _, ph, pw = self.patch
        n = idx.shape[0]
        if random_window:
            y0 = torch.randint(0, h - ph + 1, (n,), generator=self.generator, device=self.device)
            x0 = torch.randint(0, w - pw + 1, (n,), generator=self.generator, device=self.device)
        else:
            y0 = torch.full((n,), (h - ph) // 2, device=idx.device)
            x0 = torch.full((n,), (w - pw) // 2, device=idx.device)
        return gather_patches(slices, idx, self.patch, y0, x0, with_labels)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.gather(self.draw_indices())


def gather_slices(
    slices: SliceSet, idx: torch.Tensor, offsets: torch.Tensor, with_labels: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Slices ``idx`` with their neighbours (clamped inside their own case) as channels."""
    case = slices.case_of_slice[idx]
    lo = slices.case_starts[case]
    hi = lo + slices.case_lengths[case] - 1
    neighbours = torch.minimum(torch.maximum(idx[:, None] + offsets[None], lo[:, None]), hi[:, None])
    x = slices.inputs[neighbours].float()
    y = slices.labels[idx].long() if with_labels and slices.labels is not None else None
    return x, y


def gather_patches(
    slices: SliceSet,
    centre: torch.Tensor,
    patch: tuple[int, int, int],
    y0: torch.Tensor,
    x0: torch.Tensor,
    with_labels: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(B, 1, d, h, w)`` patches spanning ``d`` slices of each centre's case, window at (y0, x0)."""
    d, h, w = patch
    device = centre.device
    case = slices.case_of_slice[centre]
    lo = slices.case_starts[case]
    hi = lo + slices.case_lengths[case] - 1
    z = centre[:, None] + torch.arange(d, device=device)[None] - d // 2
    z = torch.minimum(torch.maximum(z, lo[:, None]), hi[:, None])  # (B, d), clamped inside the case
    ys = y0[:, None] + torch.arange(h, device=device)[None]  # (B, h)
    xs = x0[:, None] + torch.arange(w, device=device)[None]  # (B, w)
    zi, yi, xi = z[:, :, None, None], ys[:, None, :, None], xs[:, None, None, :]
    x = slices.inputs[zi, yi, xi].float()[:, None]
    y = slices.labels[zi, yi, xi].long() if with_labels and slices.labels is not None else None
    return x, y
