"""Export a trained run for use without lmisa: TorchScript, ONNX (when available) and a description.

``export_run(run_dir, out_dir)`` writes::

    OUT/model.ts     TorchScript (torch.jit.trace on CPU) of the segmentation path only:
                     x (N, C, H, W) float32 -> logits (N, num_classes, H, W)
    OUT/model.onnx   the same graph as ONNX (opset 17, dynamic batch), only when the ``onnx``
                     package is importable and the export succeeds; otherwise a note says why
    OUT/model.json   what the input must be and what the output means (see ``describe``)

The exported graph is the network only: preparing the input (resampling, MLNGM, crop/pad, 2.5D
context, per-sample z-scoring) and mapping the output back stay with the caller, as described in
``model.json`` (``lmisa.predict`` does all of it for NIfTI/DICOM input). Existing files are never
replaced unless ``overwrite=True``.

TorchScript is deprecated in recent PyTorch releases (in favour of ``torch.export``) but is still the
format that loads everywhere (C++ libtorch, older Python); its deprecation warnings are silenced
during the export. ``torch.jit.trace`` records the graph once; it is checked against the eager
network on a second input (``check_trace``), and the network has no data-dependent control flow,
so the traced graph accepts any batch size and any H, W that are multiples of ``size_multiple``.

Example::

    from lmisa.export import export_run
    result = export_run("runs/ct-to-mr", "export/ct-to-mr")
    net = torch.jit.load("export/ct-to-mr/model.ts")
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmisa.errors import LmisaError
from lmisa.io import atomic_write, write_text_atomic
from lmisa.nets import segment_logits
from lmisa.predict import LoadedModel, extent_caps, load_run

__all__ = ["ExportResult", "SegmentationOnly", "describe", "export_run", "TORCHSCRIPT", "ONNX", "DESCRIPTION"]

TORCHSCRIPT = "model.ts"
ONNX = "model.onnx"
DESCRIPTION = "model.json"
ONNX_OPSET = 17
FORMAT_VERSION = 2  # 2: MLNGM on the frame for online-MLNGM runs (input.representation.on)


class SegmentationOnly(nn.Module):
    """``forward(x) = net.forward_seg(x)``: the logits, without the reconstruction head.

    (A network without ``forward_seg``: its ``forward``, or the first output when that is a tuple.)
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return segment_logits(self.net, x)


@dataclass
class ExportResult:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def describe(model: LoadedModel, files: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The content of ``model.json``: the expected input, the output, the labels, the run."""
    from lmisa import __version__

    plans, cfg = model.plans, model.config
    names = {v: k for k, v in plans.labels.items()}
    c = plans.context_slices
    channels = 2 * c + 1
    h, w = plans.size
    online = model.online_mlngm  # MLNGM computed on the frame, after crop/pad and stacking, as in training
    if plans.input == "mlngm":
        representation = {
            "kind": "mlngm",
            "levels": plans.mlngm_levels,
            "on": "each channel of each framed sample (after crop/pad)" if online else "each resampled axial slice",
            "how": "multi-resolution locally normalised gradient magnitude (lmisa.mlngm.mlngm(x, levels, dims=2)), "
                   "in [0, 1]" + (" of the framed intensities (clipped and scaled as for kind raw)" if online else ""),
            "clip_percentiles": list(plans.clip_percentiles) if online else None,
        }
    else:
        representation = {
            "kind": "raw",
            "clip_percentiles": list(plans.clip_percentiles),
            "how": "intensities clipped to these percentiles of the whole resampled volume, scaled to [0, 1]",
        }
    multiple = 2 ** (len(tuple(cfg.model.widths)) - 1)
    return {
        "format": "lmisa-export",
        "format_version": FORMAT_VERSION,
        "lmisa_version": __version__,
        "files": files or {},
        "run": {
            "checkpoint": str(model.checkpoint) if model.checkpoint else None,
            "epoch": model.epoch,
            "variant": cfg.variant,
        },
        "input": {
            "name": "input",
            "shape": ["N", channels, h, w],
            "dtype": "float32",
            "layout": "N axial slices; channels = slices k-c .. k+c of the same volume (c = context_slices), "
                      "indices clamped to the volume (the first/last slice repeats at the ends); "
                      "array axes (Z, Y, X) as lmisa reads NIfTI (X = NIfTI i, Y = NIfTI j)",
            "context_slices": c,
            "channels": channels,
            # nibabel axis codes of the training images (null: not recorded, images as stored)
            "voxel_axes": plans.axis_codes,
            "inplane_spacing_mm": list(plans.spacing),
            # null: the scan's own slices; a value: the volume is resampled through-plane to it first (linear)
            "slice_spacing_mm": plans.spacing_z,
            "size": [h, w],
            "size_multiple": multiple,
            "representation": representation,
            "steps": [
                *([f"turn the volume into voxel axes {plans.axis_codes} (nibabel: as_reoriented with "
                   f"axcodes2ornt({tuple(plans.axis_codes)!r})), and the predicted labels back at the end"]
                  if plans.axis_codes else []),
                f"resample every axial slice in-plane to spacing (sy, sx) = {list(plans.spacing)} mm "
                "(bilinear, antialiased when shrinking); keep the slices as they are",
                ("clip the resampled volume's intensities to the percentiles "
                 f"{list(plans.clip_percentiles)} of the whole volume and scale to [0, 1]") if online else
                f"compute the representation ({plans.input}) of the resampled volume",
                "store as float16 and read back as float32 (as the training cache does; optional, tiny effect)",
                f"centre-crop or zero-pad each slice to {h} x {w} (crop start (n - size) // 2; "
                "pad before (size - n) // 2)",
                f"stack slices k-{c} .. k+{c} (clamped) as channels" if c else "one slice per sample, 1 channel",
                *(["MLNGM of every channel of every sample, on the frame (lmisa.mlngm.mlngm_channels)"] if online else []),
                "z-score every sample and channel over its H x W pixels: (x - mean) / (std + 1e-6), "
                "std with Bessel's correction (torch.std)",
            ],
            "zscore_per_sample": True,
            "zscore_eps": 1e-6,
        },
        "output": {
            "name": "logits",
            "kind": "logits",
            "shape": ["N", plans.num_classes, h, w],
            "dtype": "float32",
            "how": "softmax over dim 1 gives class probabilities; undo the crop/pad (outside the frame is "
                   "background), resample the probabilities back to the slice's own grid (bilinear), "
                   "argmax -> label",
        },
        "labels": dict(sorted(plans.labels.items(), key=lambda kv: kv[1])),
        "num_classes": plans.num_classes,
        "postprocess": {
            "largest_component": bool(cfg.post.largest_component),
            "how": "per organ label keep only the largest 3D connected component (full connectivity)",
            "extent_cap_mm": {names[v]: round(mm, 1) for v, mm in extent_caps(model).items()},
            "extent_cap_how": "after the connected components (if on): per organ listed, keep only the window of "
                              "floor(extent_cap_mm / slice spacing) slices (at least 1; the image's own spacing) "
                              "that holds most of its voxels (the first such window on ties); organs not listed: "
                              "no cap",
        },
        "network": {
            "dims": cfg.train.dims,
            "widths": list(cfg.model.widths),
            "norm": cfg.model.norm,
        },
    }


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int) -> str | None:
    """Write ``path``; returns None on success or a one-line note saying why it was skipped."""
    if importlib.util.find_spec("onnx") is None:
        return f"{ONNX} skipped: the onnx package is not installed (pip install onnx)"
    kwargs: dict[str, Any] = dict(
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=opset,
    )
    try:
        with atomic_write(path) as tmp:
            try:
                torch.onnx.export(module, (example,), str(tmp), dynamo=False, **kwargs)
            except TypeError:  # a torch without the dynamo switch
                torch.onnx.export(module, (example,), str(tmp), **kwargs)
            import onnx

            onnx.checker.check_model(str(tmp))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{ONNX} skipped: export failed ({type(exc).__name__}: {first})"
    return None


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    which: str = "best",
    overwrite: bool = False,
    onnx: bool = True,
    opset: int = ONNX_OPSET,
) -> ExportResult:
    """Export ``RUN/checkpoints/<which>.pt`` into ``out_dir`` (see the module docstring).

    Raises LmisaError if a file to be written exists (unless ``overwrite``) or the run cannot be
    loaded. ONNX problems never fail the export: they become a note in the result.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LmisaError(f"{out_dir}: exists and is not a folder")
    targets = [out_dir / TORCHSCRIPT, out_dir / DESCRIPTION] + ([out_dir / ONNX] if onnx else [])
    if not overwrite:
        existing = [p for p in targets if p.exists()]
        if existing:
            raise LmisaError(f"{existing[0]}: exists (pass --overwrite to replace it)")
    model = load_run(run_dir, which=which, device="cpu")
    module = SegmentationOnly(model.net).eval()
    h, w = model.plans.size
    example = torch.randn(2, model.in_channels, h, w, generator=torch.Generator().manual_seed(0))
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ExportResult(out_dir)

    with atomic_write(out_dir / TORCHSCRIPT) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is asked for; see module doc
        torch.jit.save(torch.jit.trace(module, example), str(tmp))
    result.files.append(out_dir / TORCHSCRIPT)

    onnx_file = None
    if onnx:
        note = _export_onnx(module, example, out_dir / ONNX, opset)
        if note is None:
            onnx_file = ONNX
            result.files.append(out_dir / ONNX)
        else:
            result.notes.append(note)
    else:
        result.notes.append(f"{ONNX} not requested")

    meta = describe(model, files={"torchscript": TORCHSCRIPT, "onnx": onnx_file})
    write_text_atomic(out_dir / DESCRIPTION, json.dumps(meta, indent=2) + "\n")
    result.files.append(out_dir / DESCRIPTION)
    return result
