"""Volumes to the network frame and back: crop/pad, resampling (2D and 3D plans), restoring probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmisa.io import MedicalImage
from lmisa.preprocess import Plans, crop_or_pad, prepare_image, prepare_label, restore_probabilities, uncrop

LABELS = {"background": 0, "a": 1}


@pytest.mark.parametrize("shape", [(3, 20, 27), (3, 41, 50)])
def test_crop_or_pad_and_uncrop_are_inverse(shape) -> None:
    x = torch.arange(np.prod(shape), dtype=torch.float32).reshape(shape)
    framed, box = crop_or_pad(x, (32, 32))
    back = uncrop(framed, box)
    h, w = min(shape[1], 32), min(shape[2], 32)
    (ys, _, _), (xs, _, _) = box.y, box.x
    torch.testing.assert_close(back[:, ys : ys + h, xs : xs + w], x[:, ys : ys + h, xs : xs + w])


def _blob_volume(shape, spacing_zyx):
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    lab = (((y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2) < (min(shape[1:]) / 4) ** 2).astype(np.uint8)
    img = lab.astype(np.float32) * 100 + 10
    affine = np.diag([spacing_zyx[2], spacing_zyx[1], spacing_zyx[0], 1.0])
    return MedicalImage(img, affine), MedicalImage(lab, affine)


def test_images_it_cannot_compute_are_refused() -> None:
    image, _ = _blob_volume((4, 20, 20), (4.0, 1.0, 1.0))
    plans = Plans(spacing=(1.0, 1.0), size=(20, 20), labels=LABELS)
    image.array[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        prepare_image(image, plans)
    image.array[1, 2, 3] = 9e37  # finite, but float32 sums over it (resampling, MLNGM's local means) overflow
    with pytest.raises(ValueError, match="image values reach 9e\\+37.*rescale the image"):
        prepare_image(image, plans)


@pytest.mark.parametrize("dims", [2, 3])
def test_label_round_trip_through_the_frame(dims: int) -> None:
    image, label = _blob_volume((6, 30, 36), (4.0, 1.2, 1.5))
    plans = Plans(spacing=(1.0, 1.0), size=(40, 40), labels=LABELS, dims=dims, spacing_z=2.0 if dims == 3 else None)
    prepared = prepare_image(image, plans)
    framed = prepare_label(label, plans)
    assert prepared.input.shape == framed.shape
    probs = torch.from_numpy(np.stack([framed == 0, framed == 1]).astype(np.float32))
    back = restore_probabilities(probs, prepared).argmax(0).numpy()
    assert back.shape == label.array.shape
    assert (back == label.array).mean() > 0.97


def test_2d_plans_resample_through_plane_only_with_spacing_z() -> None:
    image, label = _blob_volume((6, 30, 36), (4.0, 1.2, 1.5))
    kept = Plans(spacing=(1.0, 1.0), size=(40, 40), labels=LABELS)
    finer = Plans(spacing=(1.0, 1.0), size=(40, 40), labels=LABELS, spacing_z=2.0)
    assert prepare_image(image, kept).input.shape[0] == 6 and prepare_label(label, kept).shape[0] == 6
    assert prepare_image(image, finer).input.shape[0] == 12 and prepare_label(label, finer).shape[0] == 12
    assert kept.cache_key() != finer.cache_key()
    assert Plans(spacing=(1.0, 1.0), size=(40, 40), labels={"background": 0}).cache_key() == kept.cache_key()


def test_a_single_slice_under_3d_plans_keeps_image_and_label_aligned() -> None:
    image, label = _blob_volume((1, 30, 36), (3.0, 1.2, 1.5))
    image2d = MedicalImage(image.array[0], image.affine)
    label2d = MedicalImage(label.array[0], label.affine)
    plans = Plans(spacing=(1.0, 1.0), size=(40, 40), labels=LABELS, dims=3, spacing_z=1.0)
    assert prepare_image(image2d, plans).input.shape == prepare_label(label2d, plans).shape


@pytest.mark.parametrize("cores, pooled", [(1, False), (3, True)])
def test_the_cache_builds_with_a_worker_per_usable_core(tmp_path, monkeypatch, cores: int, pooled: bool) -> None:
    """Pinned to one core (taskset, a scheduler's share) the cache builds in the process itself: no pool whose
    workers would share that core."""
    from conftest import write_nnunet_dataset

    import lmisa.preprocess as preprocess

    root = write_nnunet_dataset(tmp_path / "d", n_cases=2, shape=(3, 16, 16))
    started: list[int] = []

    class Pool(preprocess.ProcessPoolExecutor):
        def __init__(self, max_workers: int) -> None:
            started.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(preprocess, "usable_cores", lambda: cores)
    monkeypatch.setattr(preprocess, "ProcessPoolExecutor", Pool)
    names = ["case_000", "case_001"]
    cases = [(n, root / "imagesTr" / f"{n}_0000.nii.gz", root / "labelsTr" / f"{n}.nii.gz") for n in names]
    plans = Plans(spacing=(1.5, 1.5), size=(16, 16), labels={"background": 0, "organ": 1})
    files, errors = preprocess.build_cache(cases, tmp_path / "cache", plans, progress=False)
    assert not errors and all(f.is_file() for f in files.values()) and len(files) == 2
    assert started == ([min(cores, preprocess.MAX_CACHE_WORKERS)] if pooled else [])


@pytest.mark.parametrize("content, message", [
    ('{"spacing": [1, 1]}', r"plans\.json: not the plans\.json of an lmisa run or cache \(TypeError: .*'size'"),
    ('{"spacing": [1, 1], "size": [8, 8], "clip_percentiles": [1, 99], "labels": "liver"}',
     r"plans\.labels: expected a mapping, got 'liver'"),
    ('{"spacing": [1, 1], "size": [8, 8], "mine": 1}', r"keys this lmisa does not know: mine \(written by a newer"),
    ('{"spacing": [1, 1], "size": [8.5, 8]}', r"plans\.size: expected an integer, got 8\.5"),
    ('{"spacing": "1mm", "size": [8, 8]}', r"plans\.spacing: expected a list, got '1mm'"),
    ('{"spacing": [1, 1, 1], "size": [8, 8]}', r"plans\.spacing: expected 2 values, got \[1, 1, 1\]"),
    ('{"spacing": [1, 1], "size": [8, 8], "input": "ct"}', r'"input" must be "mlngm" or "raw"'),
    ('{"spacing": [1, 1], "size": [8, 8], "dims": 4}', r'"dims" must be 2 or 3'),
    ('{"spacing": [1, 1], "size": [8, 8], "mlngm_levels": "4"}', r"plans\.mlngm_levels: expected an integer, got '4'"),
    ('{"spacing": [1, 1], "size": [8, 8], "context_slices": -1}', r'"context_slices" must be a whole number >= 0'),
    ('{"spacing": [1, 1], "size": [8, 8], "labels": {"liver": "1"}}', r"plans\.labels\.liver: expected an integer"),
    ('{"spacing": [1, 1], "size": [8, 8], "organ_extent_mm": {"liver": "x"}}', r"plans\.organ_extent_mm\.liver: expected a number"),
    ('{"spacing": [1, 1], "size": [8, 8], "axis_codes": 3}', r"plans\.axis_codes: expected a string, got 3"),
    (None, r"plans\.json: not found"),
])
def test_plans_that_cannot_be_read_name_the_file(tmp_path, content: str | None, message: str) -> None:
    from lmisa.errors import LmisaError
    from lmisa.preprocess import load_plans

    if content is not None:
        (tmp_path / "plans.json").write_text(content)
    with pytest.raises(LmisaError, match=message):
        load_plans(tmp_path / "plans.json")
    plans = Plans(spacing=(1.5, 1.5), size=(16, 16), labels={"background": 0, "organ": 1})
    (tmp_path / "plans.json").write_text(plans.to_json())
    assert load_plans(tmp_path / "plans.json") == plans


def test_plans_written_before_a_field_existed_take_its_default(tmp_path) -> None:
    from lmisa.preprocess import load_plans

    (tmp_path / "plans.json").write_text('{"spacing": [1.5, 1.5], "size": [16, 16], "input": "mlngm", '
                                         '"mlngm_levels": 4, "labels": {"background": 0, "liver": 1}}')
    plans = load_plans(tmp_path / "plans.json")
    assert plans == Plans(spacing=(1.5, 1.5), size=(16, 16), labels={"background": 0, "liver": 1})
    assert plans.dims == 2 and plans.axis_codes is None and plans.organ_extent_mm == {}
