"""The LMISA trainer: a short loop of named hooks; variants switch terms off through the config.

``fit`` is the whole loop::

    on_train_start()
    for each epoch:  on_epoch_start(); train_step(sample_batch()) x steps; validation_step(); on_epoch_end()
    on_train_end()

A variant or a peer method subclasses Trainer and overrides a hook (``build_models``,
``train_step``, ...), never the loop. Losses are accumulated on the device and read once per
``log_every`` steps, so the hot loop has no host sync.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lmisa.augment import augment_batch
from lmisa.config import Config
from lmisa.critic_window import window_index
from lmisa.errors import LmisaError
from lmisa.io import write_text_atomic
from lmisa.losses import (
    critic_loss,
    generator_adversarial_loss,
    one_hot,
    reconstruction_loss,
    segmentation_loss,
    to_critic_input,
)
from lmisa.nets import build_critic, count_parameters, segment_logits
from lmisa.precision import autocast, bf16_native, precision_name, trained_in_bf16
from lmisa.sampling import SliceSampler, min_organ_pixels, organ_pixel_quantile, organ_slices
from lmisa.training import run as runfiles
from lmisa.training.checkpoint import load_checkpoint, save_checkpoint
from lmisa.training.data import TrainingData, check_real_prior, check_weight_average, network_input
from lmisa.training.plot import plot_progress
from lmisa.training.schedule import lr_scheduler


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (or None): CUDA when present, else CPU; a CUDA device without CUDA is a clear error."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LmisaError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LmisaError(f"--device {name}: CUDA is not available on this machine")
    return device


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by this process on CUDA; peak resident memory of the process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def describe_device(device: torch.device | str) -> str:
    """One line naming the hardware a run used (written to RUN/hardware.txt)."""
    import platform

    from lmisa.cores import cpu_model, describe_cores
    from lmisa.precision import cpu_bf16_instructions

    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{name}, {cpu_model()}, {describe_cores()} (CPU), torch {torch.__version__}"
    bf16 = cpu_bf16_instructions()
    isa = f"{platform.machine()}, bf16 through {bf16}" if bf16 else platform.machine()
    return (f"CPU {cpu_model()} ({isa}), {describe_cores()} ({torch.get_num_threads()} torch threads), "
            f"torch {torch.__version__}")


class Trainer:
    """Train a generator (and critic) from TrainingData into ``run_dir``."""

    def __init__(
        self,
        cfg: Config,
        data: TrainingData,
        run_dir: Path,
        device: torch.device | str = "cpu",
        progress: bool = True,
        log: logging.Logger | None = None,
        distributed: Any = None,
    ) -> None:
        self.cfg, self.data, self.run_dir = cfg, data, Path(run_dir)
        self.device = torch.device(device)
        self.progress = progress
        self.log = log or logging.getLogger("lmisa.train")
        self.dist = distributed  # lmisa.training.distributed.DistContext or None
        self.is_main = distributed is None or distributed.rank == 0
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best_val = float("inf")
        self.real_fraction: float | None = None  # real_prior "target"/"auto" or critic_maps "organs" when applied; saved
        self.use_amp = cfg.train.amp and bf16_native(self.device, cfg.train.dims)
        self.num_classes = data.plans.num_classes
        self.in_channels = 2 * cfg.data.context_slices + 1

        torch.manual_seed(cfg.train.seed)
        rank = distributed.rank if distributed is not None else 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.train.seed * 1000 + rank)
        # as in prepare_training_data: a Trainer may also be built from hand-made TrainingData
        check_weight_average(cfg)
        check_real_prior(cfg)
        self.build_models()
        self.build_ema()
        self.build_optimisers()
        self.build_samplers()
        self.seg_loss = segmentation_loss(cfg.loss.seg).to(self.device)

    # ------------------------------------------------------------------ set-up hooks
    def build_models(self) -> None:
        from lmisa.training.variants import build_inference_net

        m = self.cfg.model
        self.net = build_inference_net(self.cfg, self.in_channels, self.num_classes).to(self.device)
        self.critic = None
        if self.cfg.uses_critic:
            self.critic = build_critic(
                dims=self.cfg.train.dims, in_channels=self.num_classes - 1, widths=tuple(m.critic_widths)
            ).to(self.device)
        if self.dist is not None:
            self.net = self.dist.wrap(self.net)
            if self.critic is not None:
                self.critic = self.dist.wrap(self.critic)

    def build_ema(self) -> None:
        """An exponential moving average of the segmenter's weights (``train.ema_decay`` > 0), used for
        validation, model selection and prediction: averaged weights sit in a flatter region of the
        loss, which transfers to a shifted domain more stably than the last step's (SWAD, Cha et al. 2021).

        Own code rather than ``torch.optim.swa_utils.AveragedModel``, whose update reads a counter back
        to the host at every step.
        """
        import copy

        self.ema = None
        if self.cfg.weight_average_decay > 0:
            self.ema = copy.deepcopy(self._bare(self.net)).requires_grad_(False)

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * net, every tensor at once (no host sync)."""
        net = self._bare(self.net)
        ema_p, net_p = list(self.ema.parameters()), list(net.parameters())
        torch._foreach_lerp_(ema_p, net_p, 1.0 - self.cfg.weight_average_decay)
        for b_ema, b in zip(self.ema.buffers(), net.buffers()):
            b_ema.copy_(b)

    def build_optimisers(self) -> None:
        t = self.cfg.train
        self.opt = torch.optim.Adam(self.net.parameters(), lr=t.lr)
        self.sched = lr_scheduler(self.opt, t)
        self.opt_critic = self.sched_critic = None
        if self.critic is not None:
            self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=t.critic_lr)
            self.sched_critic = lr_scheduler(self.opt_critic, t)

    def build_samplers(self) -> None:
        t, d = self.cfg.train, self.cfg.data
        patch = tuple(d.patch) if t.dims == 3 else None
        src = self.data.source_train.to(self.device)
        self.source_sampler = SliceSampler(
            src, t.batch_size, self.generator, d.context_slices, d.foreground_fraction, with_labels=True, patch=patch
        )
        # the critic's "real" maps: source labels drawn like the target batch (uniformly over slices),
        # so that it cannot tell the two apart by how often organs appear
        self.real_sampler = None
        if self.cfg.uses_critic and self.cfg.loss.real_uniform:
            self.real_sampler = SliceSampler(src, t.batch_size, self.generator, d.context_slices, 0.0, True, patch=patch)
        self.target_sampler = None
        if self.cfg.uses_target_images and self.data.target_train is not None:
            tgt = self.data.target_train.to(self.device)
            # uniform over slices; with data.pseudo_labels each slice carries its pseudo-label map
            self.target_sampler = SliceSampler(
                tgt, t.batch_size, self.generator, d.context_slices, 0.0, self.cfg.uses_pseudo_labels, patch=patch
            )
        self.val_slices = self.data.source_val.to(self.device)
        self.val_index = self._fixed_val_index()
        prior, share = self.cfg.loss.real_prior, self.data.organ_share
        # how many organ pixels make a map "hold an organ" for the critic's real maps and its gate
        self.organ_pixels = min_organ_pixels(tuple(self.data.plans.size))
        if self.cfg.loss.critic_maps == "organs" and self.real_sampler is not None and self.target_sampler is not None:
            q = self.cfg.loss.critic_organ_quantile
            if q > 0:
                self.organ_pixels = organ_pixel_quantile(src.labels, q, self.organ_pixels)
            self.match_real_prior(1.0, why=f"critic maps: organs only, target predictions judged where they hold one; "
                                           f"from {self.organ_pixels} organ pixels"
                                           + (f", the {q:g} quantile of the source organ slices" if q > 0 else ""))
        elif prior != "source" and self.real_sampler is not None and self.target_sampler is not None:
            if share is None:  # no organ span in the source labels, or TrainingData built by hand
                self.log.warning("loss.real_prior: %s: no organ-share estimate in the training data "
                                 "(lmisa.training.data.prepare_training_data makes it): real maps stay uniform", prior)
            elif prior == "target" or share.target > share.source:
                self.match_real_prior(share.target)
            else:
                self.log.info("critic real maps: drawn uniformly, %.0f %% hold an organ (real_prior auto: the target "
                              "scans are estimated at %.0f %%, the source scans at %.0f %%)",
                              100 * self.source_organ_share(), 100 * share.target, 100 * share.source)

    def _fixed_val_index(self) -> torch.Tensor:
        """A fixed, deterministic set of source validation slices (labelled ones first)."""
        labels = self.val_slices.labels
        n = min(len(self.val_slices), self.cfg.train.val_batches * self.cfg.train.batch_size)
        has_fg = organ_slices(labels)
        order = torch.argsort((~has_fg).to(torch.int8), stable=True)  # labelled slices first
        g = torch.Generator().manual_seed(12345)
        fg, bg = order[: int(has_fg.sum())], order[int(has_fg.sum()) :]
        fg = fg[torch.randperm(len(fg), generator=g).to(fg.device)]
        bg = bg[torch.randperm(len(bg), generator=g).to(bg.device)]
        n_fg = min(len(fg), (2 * n) // 3)
        return torch.cat([fg[:n_fg], bg[: n - n_fg]]).sort().values

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        self.on_train_start()
        for self.epoch in range(self.epoch, self.cfg.train.epochs):
            self.on_epoch_start()
            for step in range(self.cfg.train.steps_per_epoch):
                self.global_step = self.epoch * self.cfg.train.steps_per_epoch + step
                self.on_step_end(step, self.train_step(self.sample_batch()))
            val = self.validation_step()
            self.on_epoch_end(val)
        return self.on_train_end()

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast where the device computes it natively and ``train.amp`` (lmisa.precision)."""
        return autocast(self.device, self.use_amp, self.cfg.train.dims)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """Network input from cached slices: MLNGM per channel when the cache holds intensities, z-scored
        (:func:`lmisa.training.data.network_input`, which prediction uses too)."""
        return network_input(x, self.cfg)

    def sample_batch(self) -> dict[str, torch.Tensor]:
        aug, g = self.cfg.augment, self.generator
        xs, ys = self.source_sampler.sample()
        xs, ys = augment_batch(xs, ys, aug, g)
        batch = {"xs": self.represent(xs), "ys": ys}
        if self.target_sampler is not None:
            xt, yt = self.target_sampler.sample()
            xt, yt = augment_batch(xt, yt, aug, g)
            batch["xt"] = self.represent(xt)
            if yt is not None:
                batch["yt"] = yt
        if self.real_sampler is not None:
            xr, yr = self.real_sampler.sample()
            if self.cfg.loss.critic_real == "predictions":
                batch["x_real"] = self.represent(augment_batch(xr, None, aug, g)[0])
            else:
                batch["y_real"] = augment_batch(xr[:, :1], yr, aug, g)[1]
        return batch

    def source_organ_share(self) -> float:
        """Share of the critic's source label maps that hold an organ (``organ_pixels`` of them)."""
        return float(organ_slices(self.real_sampler.slices.labels, self.organ_pixels).float().mean())

    def match_real_prior(self, fraction: float, why: str | None = None) -> None:
        """From now on the critic's real maps hold an organ with probability ``fraction``; ``why`` says where
        it comes from in the log (default: the target estimate of ``loss.real_prior``)."""
        self.real_fraction = fraction
        applied = self.real_sampler.match_organ_fraction(fraction, self.organ_pixels)
        source = self.source_organ_share()
        if why is None:
            share = self.data.organ_share
            why = "target estimate" + (f", the source organs span {share.span_mm:.0f} mm" if share is not None else "")
        if not applied:
            self.log.warning("critic real maps: stay uniform (the source slices are all of one kind, %.0f %% "
                             "hold an organ); asked for %.0f %% (%s)", 100 * source, 100 * fraction, why)
        else:
            self.log.info("critic real maps: %.0f %% hold an organ (%s; the source slices: %.0f %%)",
                          100 * fraction, why, 100 * source)

    def adversarial_weight(self) -> float:
        """w_adv after the warm-up and the linear ramp (a Python float: no host sync)."""
        L, t = self.cfg.loss, self.cfg.train
        total = max(1, t.epochs * t.steps_per_epoch)
        progress = self.global_step / total
        if progress < L.adv_warmup:
            return 0.0
        if L.adv_ramp > 0 and progress < L.adv_warmup + L.adv_ramp:
            return L.w_adv * (progress - L.adv_warmup) / L.adv_ramp
        return L.w_adv

    def recon_target(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction head rebuilds the centre slice of the (standardised) input."""
        c = self.cfg.data.context_slices
        return x[:, c : c + 1]

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One generator update (seg + recon + adversarial) and one critic update (WGAN-GP)."""
        cfg, L = self.cfg, self.cfg.loss
        xs, ys = batch["xs"], batch["ys"]
        xt = batch.get("xt")
        n_s = xs.shape[0]
        stats: dict[str, torch.Tensor] = {}
        with self.autocast():
            x = torch.cat([xs, xt]) if xt is not None else xs
            seg, rec = self.net(x)
            seg_s = seg[:n_s].float()
            loss_seg = self.seg_loss(seg_s, ys)
            total = L.w_seg * loss_seg
            stats["seg"] = loss_seg.detach()
            if "yt" in batch:
                loss_pseudo = self.seg_loss(seg[n_s:].float(), batch["yt"])
                total = total + L.w_pseudo * loss_pseudo
                stats["pseudo"] = loss_pseudo.detach()
            if cfg.uses_recon and xt is not None:
                loss_rec = reconstruction_loss(rec[:n_s].float(), self.recon_target(xs)) + reconstruction_loss(
                    rec[n_s:].float(), self.recon_target(xt)
                )
                total = total + L.w_recon * loss_rec
                stats["recon"] = loss_rec.detach()
            fake = fake_weight = None
            if self.critic is not None and xt is not None:
                fake = to_critic_input(torch.softmax(seg[n_s:].float(), dim=1))
                fake_weight = self.critic_fake_weight(seg[n_s:])
                loss_adv = self.generator_adversarial(fake, fake_weight)
                total = total + self.adversarial_weight() * loss_adv
                stats["adv"] = loss_adv.detach()
                if fake_weight is not None:
                    stats["critic_fake_share"] = fake_weight.mean()
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        stats["total"] = total.detach()
        if fake is not None:
            real = self.critic_real_maps(batch, seg[:n_s])
            with self.autocast():
                loss_c, cstats = critic_loss(self.critic, real, fake.detach(), gp_weight=L.gp_weight,
                                             fake_weight=fake_weight)
            self.opt_critic.zero_grad(set_to_none=True)
            loss_c.backward()
            self.opt_critic.step()
            stats["critic"] = loss_c.detach()
            for k, v in cstats.items():
                stats[f"critic_{k}"] = v.detach()
        return stats

    def generator_adversarial(self, fake: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """The generator's WGAN term, through the critic with its weights frozen: only the generator learns from
        it, so the critic's weight gradients (discarded before its own step) are never computed, and under DDP
        never all-reduced. The generator's gradients are the same."""
        critic = self._bare(self.critic)
        critic.requires_grad_(False)  # read when the graph is built: the backward makes no weight gradients
        try:
            return generator_adversarial_loss(critic, fake, weight)
        finally:
            critic.requires_grad_(True)

    @torch.no_grad()
    def critic_fake_weight(self, seg_target: torch.Tensor) -> torch.Tensor | None:
        """``loss.critic_maps: organs``: 1 for the target predictions that hold an organ (as many argmax
        pixels as a real map needs to count as holding one, ``organ_pixels``; in 3D on the patch's centre
        slice, as the real maps are chosen), 0 for the others; None (all) otherwise. Under DDP each rank
        averages over its own judged maps."""
        if self.cfg.loss.critic_maps != "organs":
            return None
        labels = seg_target.argmax(1)
        if labels.dim() == 4:  # (N, D, H, W) patches
            labels = labels[:, labels.shape[1] // 2]
        return organ_slices(labels, self.organ_pixels).float()

    @torch.no_grad()
    def critic_real_maps(self, batch: dict[str, torch.Tensor], seg_source: torch.Tensor) -> torch.Tensor:
        """The critic's "real" samples (``loss.critic_real``): one-hot source labels, or the segmenter's
        softmax on source slices (those of the real sampler, else the step's own source batch)."""
        L = self.cfg.loss
        if L.critic_real == "predictions":
            if "x_real" in batch:
                with self.autocast():
                    seg_source = self.net(batch["x_real"])[0]
            return to_critic_input(torch.softmax(seg_source.float(), dim=1))
        return to_critic_input(one_hot(batch.get("y_real", batch["ys"]), self.num_classes, smoothing=L.real_label_smoothing))

    @torch.no_grad()
    def validation_step(self) -> dict[str, float]:
        """Loss and Dice on held-out SOURCE slices: the model-selection criterion (no target label)."""
        net = self.ema if self.ema is not None else self.net
        net.eval()
        bs = self.cfg.train.batch_size
        total_loss = torch.zeros((), device=self.device)
        inter = torch.zeros(self.num_classes - 1, device=self.device)
        denom = torch.zeros(self.num_classes - 1, device=self.device)
        for start in range(0, len(self.val_index), bs):
            idx = self.val_index[start : start + bs]
            x, y = self.source_sampler.gather(idx, self.val_slices, random_window=False)
            x = self.represent(x)
            with self.autocast():
                seg, rec = net(x)
            seg, rec = seg.float(), rec.float()
            loss = self.cfg.loss.w_seg * F.cross_entropy(seg, y)
            if self.cfg.uses_recon:
                loss = loss + self.cfg.loss.w_recon * reconstruction_loss(rec, self.recon_target(x))
            total_loss += loss * len(idx)
            pred = seg.argmax(1)
            for c in range(1, self.num_classes):
                p, t = pred == c, y == c
                inter[c - 1] += (p & t).sum()
                denom[c - 1] += p.sum() + t.sum()
        net.train()
        dice = torch.where(denom > 0, 200 * inter / denom.clamp_min(1), torch.full_like(denom, float("nan")))
        result = {"val_loss": float(total_loss / max(1, len(self.val_index))), "val_dice": float(dice.nanmean())}
        for c, name in enumerate(self._label_names()[1:]):
            result[f"val_dice_{name}"] = float(dice[c])
        return result

    def _label_names(self) -> list[str]:
        labels = self.data.plans.labels
        return [k for k, _ in sorted(labels.items(), key=lambda kv: kv[1])]

    critic_window_every = 4  # epochs between placements: one costs a prediction of every target slice

    def place_critic_window(self) -> None:
        """``loss.critic_window``: from the epoch in which the adversarial term starts, draw the target
        batch from each target scan's window around its predicted organs, placed anew every
        ``critic_window_every`` epochs (the windows are saved with the checkpoint, so a resumed run draws
        as an uninterrupted one does)."""
        margin, t = self.cfg.critic_window_margin, self.cfg.train
        if margin <= 0 or self.data.critic_window_off or self.critic is None or self.target_sampler is None:
            return
        total = max(1, t.epochs * t.steps_per_epoch)
        first = next((e for e in range(t.epochs)  # the first epoch whose last step is past the warm-up
                      if ((e + 1) * t.steps_per_epoch - 1) / total >= self.cfg.loss.adv_warmup), t.epochs)
        if self.epoch < first or (self.epoch - first) % self.critic_window_every:
            return
        span, slice_mm = self.data.region_span_mm, self.data.target_slice_mm
        if span is None or slice_mm is None:
            raise LmisaError("loss.critic_window needs the source organ region and the target slice spacings "
                             "(lmisa.training.data.prepare_training_data finds them)")
        slices = self.target_sampler.slices
        pixels = self.target_organ_pixels().cpu().numpy()  # one sync per placement
        index = window_index(pixels, slices.case_starts.tolist(), slices.case_lengths.tolist(), slice_mm, margin * span)
        before = self.target_sampler.allowed
        moved = "" if before is None else f"; {len(set(index.tolist()) - set(before.tolist()))} of them new"
        self.target_sampler.restrict_to(torch.as_tensor(index, device=self.device))
        if self.is_main:
            self.log.info("critic window: %d of %d target slices (%.0f %%), %.0f mm per scan (%.2f x the source "
                          "organ region, %.0f mm)%s", len(index), len(slices), 100 * self.window_share(),
                          margin * span, margin, span, moved)

    def window_share(self) -> float | None:
        """Share of the target slices the critic's window lets the batch draw from (None: no window)."""
        sampler = self.target_sampler
        if sampler is None or sampler.allowed is None:
            return None
        return sampler.allowed.numel() / max(1, len(sampler.slices))

    @torch.no_grad()
    def target_organ_pixels(self) -> torch.Tensor:
        """Organ pixels (argmax) of the prediction on every target training slice, by the weights that
        validate and predict (the average, where there is one); the segmentation path alone (the logits are
        those of the full forward, at the same batch partition)."""
        net = self.ema if self.ema is not None else self.net
        net.eval()
        slices, counts = self.target_sampler.slices, []
        step = 4 * self.cfg.train.batch_size
        for start in range(0, len(slices), step):
            idx = torch.arange(start, min(start + step, len(slices)), device=self.device)
            x, _ = self.target_sampler.gather(idx)
            with self.autocast():
                seg = segment_logits(net, self.represent(x))
            counts.append((seg.argmax(1) > 0).flatten(1).sum(1))
        net.train()
        return torch.cat(counts)

    # ------------------------------------------------------------------ hooks
    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters of every module this run trains, by name (peers add theirs)."""
        counts = {"net": count_parameters(self._bare(self.net))}
        if self.critic is not None:
            counts["critic"] = count_parameters(self._bare(self.critic))
        return counts

    def on_train_start(self) -> None:
        self.t_start = time.perf_counter()
        self.wall_before = self.history[-1]["wall_s"] if self.history else 0.0
        self.samples_per_step = self.cfg.train.batch_size * (2 if self.target_sampler is not None else 1)
        if self.is_main:
            precision = precision_name(self.use_amp)
            write_text_atomic(self.run_dir / runfiles.HARDWARE, f"{describe_device(self.device)}, {precision}\n")
            counts = self.parameter_counts()
            write_text_atomic(self.run_dir / runfiles.PARAMS,
                              json.dumps({"training": sum(counts.values()), "parts": counts}, indent=2) + "\n")
            self.log.info(
                "variant %s on %s (%s): %s parameters in training (%s); epochs %d x %d steps, batch %d",
                self.cfg.variant, self.device, precision, f"{sum(counts.values()):,}",
                ", ".join(f"{k} {v:,}" for k, v in counts.items()),
                self.cfg.train.epochs, self.cfg.train.steps_per_epoch, self.cfg.train.batch_size,
            )
        self._bar = None
        if self.progress and self.is_main:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            )
            total = self.cfg.train.epochs * self.cfg.train.steps_per_epoch
            self._task = self._bar.add_task(
                self.cfg.variant, total=total, completed=self.epoch * self.cfg.train.steps_per_epoch, info=""
            )
            self._bar.start()

    def on_epoch_start(self) -> None:
        self.place_critic_window()
        self.epoch_sums: dict[str, torch.Tensor] = {}
        self.epoch_steps = 0
        self.t_epoch = time.perf_counter()
        self.t_window = time.perf_counter()

    def on_step_end(self, step: int, stats: dict[str, torch.Tensor]) -> None:
        if self.ema is not None:
            self.update_ema()
        for k, v in stats.items():
            self.epoch_sums[k] = self.epoch_sums.get(k, 0) + v
        self.epoch_steps += 1
        every = self.cfg.train.log_every
        if self._bar is not None and ((step + 1) % every == 0 or step + 1 == self.cfg.train.steps_per_epoch):
            means = {k: float(v) / self.epoch_steps for k, v in self.epoch_sums.items() if not k.startswith("critic_")}
            now = time.perf_counter()
            n = every if (step + 1) % every == 0 else (step + 1) % every
            rate = n * self.samples_per_step / max(now - self.t_window, 1e-9)
            self.t_window = now
            unit = "patches" if self.cfg.train.dims == 3 else "slices"
            info = " ".join(f"{k} {v:.3g}" for k, v in means.items()) + f" | {rate:.1f} {unit}/s"
            self._bar.update(self._task, completed=self.epoch * self.cfg.train.steps_per_epoch + step + 1,
                             description=f"{self.cfg.variant} ep {self.epoch + 1}/{self.cfg.train.epochs}", info=info)

    def on_epoch_end(self, val: dict[str, float]) -> None:
        lr = self.opt.param_groups[0]["lr"]  # the rate this epoch trained at
        self.sched.step()
        if self.sched_critic is not None:
            self.sched_critic.step()
        seconds = time.perf_counter() - self.t_epoch
        if bad := self._diverged({k: float(v) for k, v in self.epoch_sums.items()}):  # one sync per epoch
            raise LmisaError(f"{self.run_dir}: non-finite training loss ({', '.join(bad)}) in epoch {self.epoch + 1}; "
                             "the checkpoints of the last good epoch are kept")
        row: dict[str, Any] = {"epoch": self.epoch + 1, "lr": lr}
        row.update({f"loss_{k}": float(v) / max(1, self.epoch_steps) for k, v in self.epoch_sums.items()})
        row.update(val)
        if (share := self.window_share()) is not None:
            row["critic_window_share"] = share
        row["slices_per_s"] = self.epoch_steps * self.samples_per_step / max(seconds, 1e-9)
        row["wall_s"] = self.wall_before + time.perf_counter() - self.t_start
        row["peak_mem_mb"] = peak_memory_mb(self.device)
        self.history.append(row)
        improved = val["val_loss"] < self.best_val
        if improved:
            self.best_val = val["val_loss"]
        if self.is_main:
            self.save(best=improved)
            runfiles.write_history_csv(self.run_dir / runfiles.LOG_CSV, self.history)
            try:
                plot_progress(self.history, self.run_dir / runfiles.PROGRESS)
            except Exception as exc:  # a picture never stops a training: the checkpoint and log.csv are written
                self.log.warning("%s not drawn (%s: %s)", runfiles.PROGRESS, type(exc).__name__, exc)
            self.log.info("epoch %d: %s", self.epoch + 1, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

    @staticmethod
    def _diverged(sums: dict[str, float]) -> list[str]:
        """Loss terms that diverged this epoch: any infinite one, and a NaN total.

        Without a "total" (peers that log NaN for the terms a stage does not train), only an epoch
        whose every term is NaN counts.
        """
        bad = [k for k, v in sums.items() if math.isinf(v)]
        if "total" in sums:
            return bad + ([] if math.isfinite(sums["total"]) else ["total"])
        return bad + (list(sums) if sums and not any(math.isfinite(v) for v in sums.values()) else [])

    def on_train_end(self) -> dict[str, Any]:
        if self._bar is not None:
            self._bar.stop()
        if self.is_main:
            write_text_atomic(self.run_dir / runfiles.DONE, "finished\n")
        return self.history[-1] if self.history else {}

    # ------------------------------------------------------------------ checkpoints
    @staticmethod
    def _bare(module: torch.nn.Module | None) -> torch.nn.Module | None:
        return getattr(module, "module", module)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "net": self._bare(self.net).state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "best_val": self.best_val,
            "history": self.history,
            "rng_sampler": self.generator.get_state(),
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.zeros(0, dtype=torch.uint8),
            "config": self.cfg.to_dict(),
            "plans": self.data.plans.to_json(),
            "bf16": self.use_amp,
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.real_fraction is not None:
            state["real_fraction"] = self.real_fraction
        if self.target_sampler is not None and self.target_sampler.allowed is not None:
            state["critic_window"] = self.target_sampler.allowed
        if self.critic is not None:
            state.update(
                critic=self._bare(self.critic).state_dict(),
                opt_critic=self.opt_critic.state_dict(),
                sched_critic=self.sched_critic.state_dict(),
            )
        return state

    def save(self, best: bool) -> None:
        ckpt = self.run_dir / runfiles.CKPT_DIR
        state = self.state()
        save_checkpoint(state, ckpt / runfiles.LATEST)
        if best:
            keep = ("epoch", "net", "ema", "config", "plans", "best_val", "bf16")
            save_checkpoint({k: state[k] for k in keep if k in state}, ckpt / runfiles.BEST)

    def keep_precision(self, state: dict[str, Any]) -> None:
        """A resumed run goes on in the precision it started in (:func:`lmisa.precision.trained_in_bf16`), as far
        as this device computes bf16 natively."""
        started_bf16 = trained_in_bf16(state, self.cfg.train.amp)
        resumed = started_bf16 and bf16_native(self.device, self.cfg.train.dims)
        if resumed != self.use_amp or resumed != started_bf16:
            dims = self.cfg.train.dims
            self.log.info("resuming in %s, the precision the run started in%s", "bf16" if resumed else "float32",
                          "" if resumed == started_bf16
                          else f" being bf16, which this device does not compute natively for a {dims}D network")
            self.use_amp = resumed

    def load(self, path: Path) -> None:
        """Restore everything from a ``latest`` checkpoint so training continues where it stopped."""
        state = load_checkpoint(path, map_location=self.device)
        self._bare(self.net).load_state_dict(state["net"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"] if "ema" in state else state["net"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        if self.critic is not None and "critic" in state:
            self._bare(self.critic).load_state_dict(state["critic"])
            self.opt_critic.load_state_dict(state["opt_critic"])
            self.sched_critic.load_state_dict(state["sched_critic"])
        saved = state.get("real_fraction")
        if saved is not None and self.real_sampler is not None and float(saved) != self.real_fraction:
            self.match_real_prior(float(saved))  # the run goes on with the share it started with
        if state.get("critic_window") is not None and self.target_sampler is not None:
            self.target_sampler.restrict_to(state["critic_window"].to(self.device))
        self.keep_precision(state)
        self.epoch = int(state["epoch"])
        self.best_val = float(state["best_val"])
        self.history = list(state["history"])
        self.generator.set_state(state["rng_sampler"].cpu())
        torch.set_rng_state(state["rng_torch"].cpu())
        cuda_state = state.get("rng_cuda")
        if self.device.type == "cuda" and cuda_state is not None and cuda_state.numel():
            torch.cuda.set_rng_state(cuda_state.cpu(), self.device)
        if self.dist is not None and self.dist.rank != 0:
            # only rank 0's sampler state is saved: the others draw a fresh stream of their own
            self.generator.manual_seed(self.cfg.train.seed * 1000 + self.dist.rank + 7919 * self.epoch)
