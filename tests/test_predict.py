"""Prediction: loading runs, one volume (geometry, 2.5D context, post-processing), files/folders/DICOM/data
sets, the no-overwrite rule, and the ``lmisa predict`` command.

(The CLI tests live here too: a ``tests/cli/test_predict.py`` beside this file would give pytest two test
modules named ``test_predict`` in a tests tree without ``__init__.py`` files, which fails collection.)
"""

from __future__ import annotations

import os
from dataclasses import replace
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from lmisa.cli import app
from lmisa.config import Config
from lmisa.errors import LmisaError
from lmisa.io import MedicalImage, read_dicom_series, read_image, read_label, write_image
from lmisa.predict import (
    CPU_SLICE_BATCH, LoadedModel, class_argmax, default_batch_size, list_inputs, load_run, predict_path, predict_volume,
    predict_volume_with_probabilities,
)
from lmisa.probabilities import read_probabilities
from lmisa.training import train
from lmisa.preprocess import Plans

LABELS = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
TINY = {
    "data": {"size": [32, 32], "spacing": [1.5, 1.5], "context_slices": 1},
    "model": {"widths": [8, 16]},
    "train": {"batch_size": 2, "val_batches": 1, "epochs": 1, "steps_per_epoch": 1, "device": "cpu"},
}
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real (tiny, one-step) source-only run with 2.5D input (one context slice each side)."""
    from conftest import write_nnunet_dataset

    from lmisa.training import train

    tmp = tmp_path_factory.mktemp("run")
    src = write_nnunet_dataset(tmp / "src", n_cases=3, shape=(5, 24, 24), spacing=(3.0, 1.5, 1.5), labels=LABELS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMISA_CACHE", str(tmp / "cache"))
        return train(src, None, out=tmp / "run", variant="source_only", overrides=TINY, progress=False)


@pytest.fixture(scope="module")
def model(run: Path) -> LoadedModel:
    return load_run(run)


def _image(shape=(4, 20, 28), spacing=(4.0, 1.2, 1.6), seed=0, rotate=True) -> MedicalImage:
    rng = np.random.default_rng(seed)
    arr = rng.normal(0, 0.05, shape).astype(np.float32)
    arr[:, shape[1] // 4 : shape[1] // 2, shape[2] // 3 : 2 * shape[2] // 3] += 1.0
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    if rotate:  # an oblique in-plane direction and an origin: written geometry must be the input's
        c, s = np.cos(0.3), np.sin(0.3)
        affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
        affine[:3, 3] = (-12.5, 40.0, 7.25)
    return MedicalImage(arr, affine)


RAS_IN_LPS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # DICOM direction whose voxel axes are the runs' RAS


def _write_dicom_series(folder: Path, array: np.ndarray, spacing=(4.0, 1.2, 1.2), origin=(-20.0, -30.0, 10.0),
                        direction=RAS_IN_LPS) -> Path:
    """A tiny CT series, one file per slice, stored in the test runs' voxel axes unless ``direction`` says
    otherwise. (GDCM's writer switches the process locale to "C", which makes Python's default text encoding
    ASCII: the locale is put back afterwards.)"""
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    try:
        return _write_dicom_files(folder, array, spacing, origin, direction)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_files(folder: Path, array: np.ndarray, spacing, origin, direction) -> Path:
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(array.astype(np.int16))
    img.SetSpacing((spacing[2], spacing[1], spacing[0]))
    img.SetOrigin(origin)
    img.SetDirection(direction)
    d = img.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    study, series = "1.2.826.0.1.3680043.2.1125.1.1", "1.2.826.0.1.3680043.2.1125.1.2"
    for k in range(img.GetDepth()):
        s = img[:, :, k]
        position = "\\".join(f"{v:.4f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k)))
        orientation = "\\".join(f"{v:.4f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
        for tag, value in (
            ("0008|0060", "CT"), ("0020|000d", study), ("0020|000e", series), ("0008|0018", f"{series}.{k + 1}"),
            ("0020|0032", position), ("0020|0013", str(k + 1)), ("0018|0050", f"{spacing[0]:.4f}"),
            ("0020|0037", orientation),
        ):
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(s)
    return folder


def _same_geometry(out: Path, image: MedicalImage) -> None:
    pred = read_label(out)
    assert pred.array.shape == image.array.shape
    assert pred.array.dtype == np.uint8
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)
    assert set(np.unique(pred.array)) <= set(LABELS.values())


# ---------------------------------------------------------------------------------------------- load_run


def test_load_run_rebuilds_the_network(run: Path, model: LoadedModel) -> None:
    assert not model.net.training
    assert model.plans.context_slices == 1 and model.in_channels == 3
    assert model.plans.labels == LABELS and model.config.variant == "source_only"
    assert model.checkpoint == run / "checkpoints" / "best.pt"
    latest = load_run(run, which="latest")
    assert latest.checkpoint.name == "latest.pt"
    assert load_run(run / "checkpoints" / "best.pt").plans == model.plans  # a checkpoint file works too


def test_a_run_predicts_in_the_precision_it_trained_in(run: Path, tmp_path: Path) -> None:
    """The checkpoint's record, else (saved before it) bf16 on CUDA only, told by the run's hardware.txt."""
    state = torch.load(run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert load_run(run).bf16 is state["bf16"]
    old = tmp_path / "old"
    shutil.copytree(run, old)
    del state["bf16"]
    torch.save(state, old / "checkpoints" / "best.pt")
    (old / "hardware.txt").write_text("CPU x86_64, 2 cores (2 torch threads), torch 2.13.0+cpu\n")
    assert load_run(old).bf16 is False
    (old / "hardware.txt").write_text("NVIDIA H100 80GB HBM3, 16 CPU cores, torch 2.13.0\n")
    assert load_run(old).bf16 is True
    (old / "hardware.txt").write_text("CPU x86_64, 2 cores (1 torch threads), torch 2.13.0+cpu, bf16 autocast\n")
    assert load_run(old).bf16 is True
    state["config"]["train"]["amp"] = False
    torch.save(state, old / "checkpoints" / "best.pt")
    assert load_run(old).bf16 is False


def test_a_run_saved_before_online_mlngm_predicts_as_it_trained(run: Path, tmp_path: Path) -> None:
    """A checkpoint without augment.before_mlngm trained on cached MLNGM: prediction computes it as then."""
    state = torch.load(run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert load_run(run).online_mlngm  # today's run: MLNGM on the frame
    del state["config"]["augment"]["before_mlngm"]
    torch.save(state, tmp_path / "old.pt")
    old = load_run(tmp_path / "old.pt")
    assert old.config.augment.before_mlngm is False and not old.online_mlngm


def test_load_run_errors_name_the_folder(run: Path, tmp_path: Path) -> None:
    with pytest.raises(LmisaError, match=f"{tmp_path}: not a run folder"):
        load_run(tmp_path)
    with pytest.raises(LmisaError, match="run folder not found"):
        load_run(tmp_path / "nope")
    half = tmp_path / "half"
    (half / "checkpoints").mkdir(parents=True)
    (half / "checkpoints" / "latest.pt").write_bytes((run / "checkpoints" / "latest.pt").read_bytes())
    with pytest.raises(LmisaError, match=rf"{half}: no checkpoints/best\.pt.*--checkpoint latest"):
        load_run(half)
    (half / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LmisaError, match="unreadable checkpoint"):
        load_run(half)
    with pytest.raises(LmisaError, match="best or|one of"):
        load_run(run, which="final")


def test_3d_run_predicts_on_the_image_grid(tmp_path: Path, monkeypatch) -> None:
    """A 3D run resamples through-plane too, slides patches (MONAI) and maps back to the input grid."""
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    from conftest import write_nnunet_dataset

    src = write_nnunet_dataset(tmp_path / "src3", n_cases=3, shape=(10, 24, 24), labels=LABELS, seed=0)
    cfg = {
        "data": {"size": [32, 32], "spacing": [1.5, 1.5], "spacing_z": 4.0, "patch": [8, 16, 16]},
        "train": {"batch_size": 2, "val_batches": 1, "epochs": 1, "steps_per_epoch": 1},
    }
    run3 = train(src, None, out=tmp_path / "run3", variant="source_only", dims=3, overrides=cfg, progress=False)
    model3 = load_run(run3)
    image = _image(shape=(7, 20, 28))
    out = predict_volume(model3, image)
    assert out.shape == image.array.shape and out.dtype == np.uint8
    _probabilities_match(model3, image, out)
    with pytest.raises(LmisaError, match="2D runs"):
        predict_volume(model3, image, tta=True)


def test_2d_run_with_spacing_z_trains_records_it_and_predicts_on_the_image_grid(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    from conftest import write_nnunet_dataset

    src = write_nnunet_dataset(tmp_path / "src", n_cases=3, shape=(6, 24, 24), spacing=(3.0, 1.5, 1.5), labels=LABELS)
    cfg = {**TINY, "data": {**TINY["data"], "spacing_z": 2.0}}
    run2 = train(src, None, out=tmp_path / "run", variant="source_only", overrides=cfg, progress=False)
    model2 = load_run(run2)
    assert model2.plans.dims == 2 and model2.plans.spacing_z == 2.0
    image = _image(shape=(5, 20, 28))
    labels = predict_volume(model2, image)
    assert labels.shape == image.array.shape
    _probabilities_match(model2, image, labels)


# ---------------------------------------------------------------------------------------------- one volume


class _Threshold(nn.Module):
    """Class 1 where the centre channel is above half its range: prediction = the bright region of the input."""

    def __init__(self, context: int = 0) -> None:
        super().__init__()
        self.context = context
        self.dummy = nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def forward_seg(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        centre = x[:, self.context : self.context + 1]
        lo, hi = centre.amin(dim=(2, 3), keepdim=True), centre.amax(dim=(2, 3), keepdim=True)
        return torch.cat([torch.zeros_like(centre), 4 * (centre - (lo + hi) / 2)], 1)  # half-way threshold


def _fake_model(context: int = 0, largest_component: bool = False, size=(48, 48)) -> LoadedModel:
    plans = Plans(spacing=(1.5, 1.5), size=size, input="raw", context_slices=context, labels={"background": 0, "organ": 1})
    cfg = Config()
    cfg.data.input = "raw"  # as its plans: the network sees normalised intensities
    cfg.post.largest_component = largest_component
    cfg.post.extent_margin = 0.0  # its plans record no organ extents
    return LoadedModel(_Threshold(context), plans, cfg)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


@pytest.mark.parametrize("spacing", [3.0, 0.75])  # 2x and 0.5x the model's in-plane spacing
def test_prediction_is_on_the_image_grid(spacing: float) -> None:
    # An off-centre, non-square blob on a non-square grid: a flip, transpose or shift would show.
    shape = (3, 30, 20) if spacing == 3.0 else (3, 90, 70)
    f = 3.0 / spacing  # voxels per 3 mm
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    blob = ((y - 9 * f) / (4 * f)) ** 2 + ((x - 6 * f) / (3 * f)) ** 2 < 1
    arr = np.where(blob, 1.0, 0.0).astype(np.float32) + np.random.default_rng(0).normal(0, 0.02, shape).astype(np.float32)
    image = MedicalImage(arr, np.diag([spacing, spacing, 4.0, 1.0]))
    pred = predict_volume(_fake_model(), image)
    assert pred.shape == shape and pred.dtype == np.uint8
    assert _dice(pred == 1, blob) > 0.9


@pytest.mark.parametrize("spacing_z", [2.0, 8.0])  # half and twice the image's 4 mm slices
def test_through_plane_resampled_2d_run_predicts_on_the_image_grid(spacing_z: float) -> None:
    # a blob on slices 3-8 of 12: the network sees the slices at spacing_z, the labels come back on the image's
    shape = (12, 30, 20)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    blob = (((y - 12) / 6) ** 2 + ((x - 9) / 5) ** 2 < 1) & (z >= 3) & (z <= 8)
    image = MedicalImage(np.where(blob, 1.0, 0.0).astype(np.float32), np.diag([1.5, 1.5, 4.0, 1.0]))
    model = _fake_model(context=1)
    model.plans.spacing_z = spacing_z
    pred = predict_volume(model, image, batch_size=5)
    assert pred.shape == shape and pred.dtype == np.uint8
    assert sum(x.shape[0] for x in model.net.seen) == round(12 * 4.0 / spacing_z)
    # in-plane where it is; through-plane centred on it, within 2 slices of its ends (the fake net thresholds each
    # resampled slice by its own range, so a slice blended from blob and background counts as blob)
    assert _dice(pred[3:9] == 1, blob[3:9]) > 0.9
    found = np.flatnonzero(pred.any(axis=(1, 2)))
    assert (found[0] + found[-1]) / 2 == 5.5 and found[0] >= 1 and found[-1] <= 10


def test_online_mlngm_runs_see_the_input_training_saw() -> None:
    """With MLNGM computed online in training (the default), the network sees MLNGM of the framed cached
    intensities (Trainer.represent), not MLNGM of the whole slice cropped afterwards."""
    from dataclasses import replace

    from lmisa.augment import standardise
    from lmisa.preprocess import prepare_image
    from lmisa.training.data import network_input

    plans = Plans(spacing=(1.5, 1.5), size=(32, 32), input="mlngm", context_slices=0, labels={"background": 0, "organ": 1})
    cfg = Config.from_dict({"post": {"extent_margin": 0.0}})  # no cap: these plans record no organ extents
    model = LoadedModel(_Threshold(), plans, cfg)  # defaults: data.input mlngm, augment.before_mlngm
    image = _image(shape=(3, 40, 36), spacing=(4.0, 1.5, 1.5), rotate=False)  # larger than the frame: cropped
    predict_volume(model, image)
    seen = torch.cat(model.net.seen)

    def cached(p: Plans) -> torch.Tensor:  # as the training cache stores it (float16), one channel
        return torch.from_numpy(prepare_image(image, p).input.astype(np.float16)).float()[:, None]

    torch.testing.assert_close(seen, network_input(cached(replace(plans, input="raw")), model.config))
    assert not torch.allclose(seen, standardise(cached(plans)), atol=1e-2)  # MLNGM of the whole slice, cropped


def test_test_time_augmentation_follows_the_config() -> None:
    # the blob of test_prediction_is_on_the_image_grid: the views, warped back, still find it
    shape = (3, 30, 20)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    blob = ((y - 9) / 4) ** 2 + ((x - 6) / 3) ** 2 < 1
    image = MedicalImage(np.where(blob, 1.0, 0.0).astype(np.float32), np.diag([3.0, 3.0, 4.0, 1.0]))
    model = _fake_model()
    plain = predict_volume(model, image)
    assert len(model.net.seen) == 1  # one batch, one view
    model.config.post.tta = True
    with_views = predict_volume(model, image)  # default: the config's
    assert len(model.net.seen) == 1 + 5
    assert _dice(with_views == 1, blob) > 0.9 and _dice(with_views == 1, plain == 1) > 0.9
    predict_volume(model, image, tta=False)
    assert len(model.net.seen) == 1 + 5 + 1


def test_outside_the_network_frame_is_background() -> None:
    # 30 rows at 3 mm = 60 rows at 1.5 mm, cropped to 48: original rows 0-2 and 27-29 are never seen.
    shape = (2, 30, 20)
    arr = np.zeros(shape, np.float32)
    arr[:, 10:16, 5:12] = 1.0
    arr[:, 27:, 5:12] = 1.0  # bright, but outside the frame
    pred = predict_volume(_fake_model(), MedicalImage(arr, np.diag([3.0, 3.0, 4.0, 1.0])))
    assert pred[:, 27:].max() == 0
    assert _dice(pred == 1, arr > 0.5) > 0.5 and pred[:, 11:15, 6:11].all()


def test_context_slices_are_clamped_inside_the_volume() -> None:
    model = _fake_model(context=1, size=(16, 16))
    arr = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)  # three different slices
    predict_volume(model, MedicalImage(arr, np.diag([1.5, 1.5, 3.0, 1.0])), batch_size=2)
    seen = torch.cat(model.net.seen)  # (3 slices, 3 channels, 16, 16), in slice order
    assert seen.shape == (3, 3, 16, 16)
    assert not torch.allclose(seen[0, 1], seen[1, 1]) and not torch.allclose(seen[1, 1], seen[2, 1])
    for k in range(3):  # channel c of slice k is slice clamp(k - 1 + c), z-scored on its own
        for c in range(3):
            torch.testing.assert_close(seen[k, c], seen[min(max(k - 1 + c, 0), 2), 1])


def test_largest_component_per_organ_follows_the_config() -> None:
    shape = (3, 40, 40)
    arr = np.zeros(shape, np.float32)
    arr[:, 5:20, 5:20] = 1.0
    arr[:, 28:32, 28:32] = 1.0  # a small island of the same class
    image = MedicalImage(arr, np.diag([1.5, 1.5, 3.0, 1.0]))
    raw = predict_volume(_fake_model(largest_component=False), image)
    assert raw[:, 29:31, 29:31].all()
    cleaned = predict_volume(_fake_model(largest_component=True), image)  # default: the config's
    assert cleaned[:, 28:32, 28:32].max() == 0 and cleaned[:, 8:17, 8:17].all()
    assert predict_volume(_fake_model(largest_component=True), image, largest_component=False)[:, 29:31, 29:31].all()


def test_real_run_predicts_on_the_image_grid(model: LoadedModel) -> None:
    image = _image(shape=(4, 20, 28), spacing=(4.0, 3.0, 3.0))  # 2x the run's 1.5 mm
    pred = predict_volume(model, image, batch_size=3)
    assert pred.shape == image.array.shape and pred.dtype == np.uint8
    flat = MedicalImage(image.array[0], image.affine)  # a single 2D slice works too
    assert predict_volume(model, flat).shape == image.array.shape[1:]


# ---------------------------------------------------------------------------------------------- paths


def test_predict_one_nifti_file(model: LoadedModel, tmp_path: Path) -> None:
    image = _image()
    src = write_image(tmp_path / "in" / "patient7_0000.nii.gz", image)
    report = predict_path(model, src, tmp_path / "out", progress=False)
    assert report.ok and report.written == [tmp_path / "out" / "patient7.nii.gz"]
    _same_geometry(report.written[0], image)
    header = read_image(report.written[0]).header
    assert header.get_data_dtype() == np.uint8


def test_predict_folder_reports_and_skips_a_corrupt_file(model: LoadedModel, tmp_path: Path) -> None:
    images = {f"c{i}": _image(seed=i, shape=(3 + i, 20, 24)) for i in range(2)}
    for name, img in images.items():
        write_image(tmp_path / "in" / f"{name}.nii.gz", img)
    bad = tmp_path / "in" / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b this is not gzip")
    report = predict_path(model, tmp_path / "in", tmp_path / "out", progress=False)
    assert sorted(p.name for p in report.written) == ["c0.nii.gz", "c1.nii.gz"]
    assert [p for p, _ in report.failed] == [bad] and not report.ok
    assert any(line.startswith(f"{bad}: ") for line in report.lines())
    for name, img in images.items():
        _same_geometry(tmp_path / "out" / f"{name}.nii.gz", img)
    assert not (tmp_path / "out" / "broken.nii.gz").exists()


def test_predict_dicom_series(model: LoadedModel, tmp_path: Path) -> None:
    arr = (np.random.default_rng(0).normal(0, 30, (4, 20, 24)) + 100).astype(np.int16)
    arr[:, 5:12, 8:16] += 400
    series = _write_dicom_series(tmp_path / "ct_series", arr)
    report = predict_path(model, series, tmp_path / "out", progress=False)
    assert report.ok and [p.name for p in report.written] == ["ct_series.nii.gz"]
    _same_geometry(report.written[0], read_dicom_series(series))
    # a folder of series folders: one output per series
    _write_dicom_series(tmp_path / "many" / "a", arr)
    _write_dicom_series(tmp_path / "many" / "b", arr[:3])
    report = predict_path(model, tmp_path / "many", tmp_path / "out_many", progress=False)
    assert sorted(p.name for p in report.written) == ["a.nii.gz", "b.nii.gz"]


def _probabilities_match(model: LoadedModel, image: MedicalImage, labels: np.ndarray) -> np.ndarray:
    """The probabilities beside a label map: on the image's grid, summing to 1, the same labels (no
    post-processing here: the tiny runs' maps are mostly argmax), their argmax the labels nearly everywhere."""
    again, probs = predict_volume_with_probabilities(model, image, largest_component=False, extent_margin=0.0)
    plain = predict_volume(model, image, largest_component=False, extent_margin=0.0)
    np.testing.assert_array_equal(again, plain)
    assert probs.dtype == np.float16 and probs.shape == (model.plans.num_classes, *image.array.shape)
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=5e-3)
    assert (probs.astype(np.float32).argmax(0) == plain).mean() > 0.99  # float16 rounding may flip near-ties
    return probs


def test_probabilities_follow_the_labels_and_the_voxel_axes(model: LoadedModel) -> None:
    image = _image(shape=(5, 24, 20), rotate=False)
    probs = _probabilities_match(model, image, predict_volume(model, image))
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])  # the same voxels stored LPS: the probabilities come back in its axes
    flip[:2, 3] = [(image.shape[2] - 1) * image.spacing[2], (image.shape[1] - 1) * image.spacing[1]]
    lps = MedicalImage(np.ascontiguousarray(image.array[:, ::-1, ::-1]), image.affine @ flip)
    _, probs_lps = predict_volume_with_probabilities(model, lps, largest_component=False, extent_margin=0.0)
    np.testing.assert_array_equal(probs_lps, probs[:, :, ::-1, ::-1])


@pytest.mark.parametrize("kind", ["one slice", "tta", "ensemble"])
def test_probabilities_of_a_single_slice_with_tta_and_of_an_ensemble(kind: str) -> None:
    from lmisa.ensemble import Ensemble

    arr = np.zeros((40, 40) if kind == "one slice" else (3, 40, 40), np.float32)
    arr[..., 8:20, 10:25] = 1.0
    image = MedicalImage(arr, np.diag([1.5, 1.5, 4.0, 1.0]))
    model = Ensemble([_fake_model(), _fake_model()]) if kind == "ensemble" else _fake_model()
    labels, probs = predict_volume_with_probabilities(model, image, tta=kind == "tta")
    np.testing.assert_array_equal(labels, predict_volume(model, image, tta=kind == "tta"))
    assert probs.shape == (2, *arr.shape) and probs.dtype == np.float16
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=5e-3)
    np.testing.assert_array_equal(probs.astype(np.float32).argmax(0), labels)


def test_probabilities_are_those_before_post_processing() -> None:
    model = _fake_model(largest_component=True)
    arr = np.zeros((3, 40, 40), np.float32)
    arr[:, 5:15, 5:15], arr[:, 25:28, 25:28] = 1.0, 1.0  # two blobs: post-processing keeps the larger
    labels, probs = predict_volume_with_probabilities(model, MedicalImage(arr, np.diag([1.5, 1.5, 4.0, 1.0])))
    assert labels[:, 26, 26].max() == 0 and (probs[1, :, 26, 26] > 0.5).all()
    assert (labels[:, 10, 10] == 1).all()


def test_an_image_stored_in_other_voxel_axes_is_predicted_in_the_runs(model: LoadedModel, tmp_path: Path) -> None:
    assert model.plans.axis_codes == "RAS"  # the synthetic training images' axes, recorded in plans.json
    image = _image(shape=(5, 24, 20), rotate=False)
    expected = predict_volume(model, image)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])  # the same voxels stored LPS (DICOM's usual axes)
    flip[:2, 3] = [(image.shape[2] - 1) * image.spacing[2], (image.shape[1] - 1) * image.spacing[1]]
    lps = MedicalImage(np.ascontiguousarray(image.array[:, ::-1, ::-1]), image.affine @ flip)
    np.testing.assert_array_equal(predict_volume(model, lps), expected[:, ::-1, ::-1])
    series = _write_dicom_series(tmp_path / "lps", (image.array * 100).astype(np.int16),
                                 direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    report = predict_path(model, series, tmp_path / "out", progress=False)
    assert report.ok
    _same_geometry(report.written[0], read_dicom_series(series))


def test_predict_dataset_root_uses_imagesTs_else_imagesTr(model: LoadedModel, tmp_path: Path, nnunet_factory) -> None:
    root = nnunet_factory("ds", n_cases=2, shape=(3, 20, 20), labels=LABELS)
    report = predict_path(model, root, tmp_path / "out_tr", progress=False)
    assert sorted(p.name for p in report.written) == ["case_000.nii.gz", "case_001.nii.gz"]
    _same_geometry(report.written[0], read_image(root / "imagesTr" / "case_000_0000.nii.gz"))
    write_image(root / "imagesTs" / "test_005_0000.nii.gz", _image())
    report = predict_path(model, root, tmp_path / "out_ts", progress=False)
    assert [p.name for p in report.written] == ["test_005.nii.gz"]


def test_inputs_that_are_not_images(tmp_path: Path, model: LoadedModel) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LmisaError, match="no NIfTI images, DICOM series"):
        list_inputs(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(LmisaError, match="not a NIfTI file"):
        list_inputs(tmp_path / "notes.txt")
    write_image(tmp_path / "in" / "a.nii.gz", _image())
    with pytest.raises(LmisaError, match="input folder"):
        predict_path(model, tmp_path / "in", tmp_path / "in", progress=False)


def test_existing_outputs_are_never_replaced_without_overwrite(model: LoadedModel, tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "a.nii.gz", _image())
    out = tmp_path / "out" / "a.nii.gz"
    out.parent.mkdir()
    out.write_bytes(b"precious")
    report = predict_path(model, tmp_path / "in", tmp_path / "out", progress=False)
    assert report.skipped == [out] and report.ok and out.read_bytes() == b"precious"
    assert report.lines() == [f"{out}: exists, kept"]
    report = predict_path(model, tmp_path / "in", tmp_path / "out", overwrite=True, progress=False)
    assert report.written == [out] and read_label(out).array.shape == (4, 20, 28)


def test_saved_probabilities_beside_the_label_maps(model: LoadedModel, tmp_path: Path) -> None:
    image = _image()
    write_image(tmp_path / "in" / "a.nii.gz", image)
    out = tmp_path / "out"
    report = predict_path(model, tmp_path / "in", out, progress=False, save_probabilities=True)
    assert report.ok and sorted(p.name for p in report.written) == ["a.nii.gz", "a.npz"]
    saved = read_probabilities(out / "a.npz")
    assert saved.labels == LABELS and saved.probabilities.shape == (5, *image.array.shape)
    np.testing.assert_allclose(saved.affine, read_image(tmp_path / "in" / "a.nii.gz").affine)
    # a case whose probabilities went missing: they are written, its label map is kept as it was
    label_before = (out / "a.nii.gz").stat().st_mtime_ns
    (out / "a.npz").unlink()
    report = predict_path(model, tmp_path / "in", out, progress=False, save_probabilities=True)
    assert report.written == [out / "a.npz"] and report.skipped == [out / "a.nii.gz"]
    assert (out / "a.nii.gz").stat().st_mtime_ns == label_before
    again = predict_path(model, tmp_path / "in", out, progress=False, save_probabilities=True)
    assert again.written == [] and sorted(again.skipped) == [out / "a.nii.gz", out / "a.npz"]
    np.testing.assert_array_equal(read_probabilities(out / "a.npz").probabilities, saved.probabilities)
    (out / "a.npz").write_bytes(b"old")  # --overwrite replaces both
    (out / "a.nii.gz").write_bytes(b"old")
    replaced = predict_path(model, tmp_path / "in", out, progress=False, save_probabilities=True, overwrite=True)
    assert sorted(replaced.written) == [out / "a.nii.gz", out / "a.npz"] and replaced.skipped == []
    np.testing.assert_array_equal(read_probabilities(out / "a.npz").probabilities, saved.probabilities)
    assert read_label(out / "a.nii.gz").array.shape == image.array.shape


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_predict_folder_with_a_corrupt_file_exits_1(run: Path, tmp_path: Path) -> None:
    for i in range(2):
        write_image(tmp_path / "in" / f"c{i}_0000.nii.gz", _image(seed=i))
    bad = tmp_path / "in" / "zz_0000.nii.gz"
    bad.write_bytes(b"garbage")
    result = runner.invoke(app, ["predict", "-m", str(run), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                 "--device", "cpu", "--no-postprocess", "--tta"])
    assert result.exit_code == 1, result.output
    assert str(bad) in result.output and "2 files written" in result.output and "1 input failed" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c0.nii.gz", "c1.nii.gz"]
    probs = runner.invoke(app, ["predict", "-m", str(run), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                "--device", "cpu", "--no-postprocess", "--tta", "--save-probabilities"])
    assert probs.exit_code == 1 and "2 files written" in probs.output and "2 files existed, kept" in probs.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c0.nii.gz", "c0.npz", "c1.nii.gz", "c1.npz"]


def test_cli_predict_twice_changes_nothing(run: Path, tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / "in" / f"c{i}.nii.gz", _image(seed=i))
    args = ["predict", "-m", str(run), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--checkpoint", "latest"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "3 files written" in first.output
    outputs = sorted((tmp_path / "out").iterdir())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs}
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "0 files written" in second.output and "3 files existed, kept (use --overwrite)" in second.output
    assert sorted((tmp_path / "out").iterdir()) == outputs
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs} == before
    third = runner.invoke(app, [*args, "--overwrite"])
    assert third.exit_code == 0 and "3 files written" in third.output


def test_cli_predict_user_errors_are_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", "-m", str(tmp_path), "-i", str(tmp_path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "not a run folder" in result.output and "Traceback" not in result.output


def test_cli_predict_report(run: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "c0.nii.gz", _image())
    args = ["predict", "-m", str(run), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--report"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "report" / "index.html").is_file()
    assert (tmp_path / "out" / "report" / "cases" / "c0.png").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "exists, skipped" in again.output
    assert os.path.exists(tmp_path / "out" / "report" / "index.md")


def test_class_argmax_equals_torch_argmax_ties_included() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(5, 3, 7, 9, generator=g)
    probs[2, 0] = probs[4, 0] = probs[:, 0].amax(0)  # ties: the first class wins, as in torch.argmax
    out = class_argmax(probs)
    assert out.dtype == torch.uint8
    assert torch.equal(out, probs.argmax(0).to(torch.uint8))


# -------------------------------------------------------------------------------------- extent cap


def test_the_extent_cap_follows_the_config_and_the_plans() -> None:
    from dataclasses import replace

    arr = np.zeros((8, 40, 40), np.float32)
    arr[:, 5:20, 5:20] = 1.0  # the organ on 8 slices of 3 mm = 24 mm
    image = MedicalImage(arr, np.diag([1.5, 1.5, 3.0, 1.0]))
    model = _fake_model()
    model.plans = replace(model.plans, organ_extent_mm={"organ": 10.0})
    model.config.post.extent_margin = 0.0
    assert predict_volume(model, image)[:, 10, 10].all()  # the config's margin: 0, no cap
    capped = predict_volume(model, image, extent_margin=1.2)  # 12 mm: 4 slices
    assert capped[:, 10, 10].sum() == 4
    model.config.post.extent_margin = 1.2
    assert np.array_equal(predict_volume(model, image), capped)
    model.plans = replace(model.plans, organ_extent_mm={})  # a run from before the extents were recorded
    with pytest.raises(LmisaError, match="no organ extents"):
        predict_volume(model, image)
    assert predict_volume(model, image, extent_margin=0.0)[:, 10, 10].all()


def test_a_run_records_the_source_organ_extents(run: Path, model: LoadedModel) -> None:
    """The tiny run's source cases: 5 slices of 3 mm, each organ's blob on slices 1-4 (12 mm)."""
    import json

    assert model.plans.organ_extent_mm == {"liver": 12.0, "right_kidney": 12.0, "left_kidney": 12.0, "spleen": 12.0}
    assert json.loads((run / "plans.json").read_text())["organ_extent_mm"] == model.plans.organ_extent_mm
    assert model.config.post.extent_margin == 1.1  # the default


def test_cli_predict_extent_margin_needs_recorded_extents(run: Path, tmp_path: Path) -> None:
    import json

    img = tmp_path / "in" / "x_0000.nii.gz"
    write_image(img, _image(shape=(5, 24, 24)))
    ok = runner.invoke(app, ["predict", "-m", str(run), "-i", str(img.parent), "-o", str(tmp_path / "a"),
                             "--extent-margin", "1.1"])
    assert ok.exit_code == 0, ok.output
    state = torch.load(run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    plans = json.loads(state["plans"])
    del plans["organ_extent_mm"]  # as saved before the extents were recorded
    state["plans"] = json.dumps(plans)
    torch.save(state, tmp_path / "old.pt")
    old = runner.invoke(app, ["predict", "-m", str(tmp_path / "old.pt"), "-i", str(img.parent), "-o",
                              str(tmp_path / "b"), "--extent-margin", "1.1"])
    assert old.exit_code != 0 and "no organ extents" in old.output and "old.pt" in old.output
    assert not list((tmp_path / "b").glob("*.nii.gz"))
    both = runner.invoke(app, ["predict", "-m", str(run), "-i", str(img.parent), "-o", str(tmp_path / "c"),
                               "--no-postprocess", "--extent-margin", "1.1"])
    assert both.exit_code != 0 and "leave out --extent-margin" in both.output


def test_default_batch_is_small_on_a_cpu_and_large_on_an_accelerator() -> None:
    model = _fake_model(size=(16, 16))
    arr = np.random.default_rng(0).random((20, 16, 16)).astype(np.float32)
    predict_volume(model, MedicalImage(arr, np.diag([1.5, 1.5, 3.0, 1.0])))  # on the CPU: 8 slices per forward
    assert [len(x) for x in model.net.seen] == [8, 8, 4]
    assert default_batch_size(torch.device("cpu"), 2) == CPU_SLICE_BATCH
    assert default_batch_size(torch.device("cuda"), 2) == default_batch_size(torch.device("cpu"), 3) == 32


def test_an_image_without_geometry_is_taken_as_stored(model: LoadedModel) -> None:
    image = _image(shape=(5, 24, 20), rotate=False)
    bare = MedicalImage(image.array)  # the default identity affine: no geometry given
    lps = LoadedModel(model.net, replace(model.plans, axis_codes="LPS"), model.config)
    np.testing.assert_array_equal(predict_volume(lps, bare), predict_volume(model, bare))


def test_a_nifti_file_with_the_identity_affine_is_turned_as_ras(model: LoadedModel, tmp_path: Path) -> None:
    image = _image(shape=(5, 24, 20), rotate=False)
    write_image(tmp_path / "eye.nii.gz", image.array)  # no geometry given: the identity affine
    on_disk = read_image(tmp_path / "eye.nii.gz")  # RAS by its header, not "no geometry"
    las = LoadedModel(model.net, replace(model.plans, axis_codes="LAS"), model.config)
    mirrored = MedicalImage(np.ascontiguousarray(on_disk.array[..., ::-1]))  # RAS -> LAS: x reversed, taken as stored
    np.testing.assert_array_equal(predict_volume(las, on_disk), predict_volume(las, mirrored)[..., ::-1])
