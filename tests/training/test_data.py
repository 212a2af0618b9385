"""From data set folders to slices: the intensity cache that on-the-fly MLNGM (augment.before_mlngm) needs."""

from __future__ import annotations

import json
import shutil
import logging
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from lmisa.augment import standardise
from lmisa.config import Config
from lmisa.errors import LmisaError
from lmisa.io import read_label
from lmisa.real_prior import OrganShare, expected_organ_fraction
from lmisa.mlngm import mlngm_channels
from lmisa.training import train
from lmisa.training.data import check_augment, prepare_training_data
from lmisa.training.trainer import Trainer

LABELS = {"background": 0, "liver": 1, "spleen": 2}
DATA = {"size": [24, 24], "spacing": [1.5, 1.5]}
APPEARANCE = {"before_mlngm": True, "remap_prob": 0.5, "bias_field": 0.3, "noise_max": 0.05, "noise_std": 0.0}
PLAIN = {"before_mlngm": False, "remap_prob": 0.0, "bias_field": 0.0, "noise_max": 0.0, "noise_std": 0.05}


@pytest.fixture
def domains(tmp_path: Path, nnunet_factory, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    src = nnunet_factory("src", n_cases=3, shape=(4, 20, 20), labels=LABELS, seed=0)
    tgt = nnunet_factory("tgt", n_cases=2, shape=(3, 20, 20), labels=LABELS, seed=1)
    return src, tgt


def _cfg(**sections) -> Config:
    return Config.from_dict({"data": DATA, **sections})


def test_before_mlngm_caches_the_intensities_and_keeps_mlngm_plans(domains) -> None:
    src, tgt = domains
    online = prepare_training_data(_cfg(augment=APPEARANCE), src, tgt, progress=False)
    raw = prepare_training_data(_cfg(data={**DATA, "input": "raw"}), src, tgt, progress=False)
    assert online.plans.input == "mlngm"  # what prediction will compute
    torch.testing.assert_close(online.source_train.inputs, raw.source_train.inputs)
    torch.testing.assert_close(online.target_train.inputs, raw.target_train.inputs)


def test_trainer_computes_mlngm_per_batch_only_when_the_cache_holds_intensities(domains, tmp_path: Path) -> None:
    src, tgt = domains
    x = torch.rand(2, 1, 24, 24)
    for augment, expected in ((APPEARANCE, standardise(mlngm_channels(x))), (PLAIN, standardise(x))):
        cfg = _cfg(augment=augment, train={"batch_size": 2})
        trainer = Trainer(cfg, prepare_training_data(cfg, src, tgt, progress=False), tmp_path / "t", progress=False)
        torch.testing.assert_close(trainer.represent(x), expected)


def test_a_run_with_before_mlngm_trains_and_predicts_from_mlngm_plans(domains, tmp_path: Path) -> None:
    src, tgt = domains
    overrides = {"data": DATA, "augment": APPEARANCE,
                 "train": {"batch_size": 2, "val_batches": 1, "epochs": 1, "steps_per_epoch": 2}}
    run = train(src, tgt, out=tmp_path / "run", overrides=overrides, progress=False)
    assert json.loads((run / "plans.json").read_text())["input"] == "mlngm"
    assert (run / "DONE").exists()


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"augment": {**PLAIN, "remap_prob": 0.5}}, "before_mlngm"),
        ({"augment": {**PLAIN, "bias_field": 0.2}}, "before_mlngm"),
    ],
)
def test_appearance_options_that_cannot_work_are_refused(sections, message) -> None:
    with pytest.raises(LmisaError, match=message):
        check_augment(_cfg(**sections))


def test_appearance_options_on_raw_input_need_no_mlngm_switch() -> None:
    check_augment(_cfg(data={**DATA, "input": "raw"}, augment={"remap_prob": 0.5, "bias_field": 0.2}))


def _respace(path: Path, z_mm: float, depth: int | None = None) -> None:
    """Rewrite a NIfTI file with another slice spacing (and, optionally, only its first ``depth`` slices)."""
    img = nib.load(str(path))
    data = np.asarray(img.dataobj)[..., :depth]
    affine = img.affine.copy()
    affine[:3, 2] *= z_mm / float(np.linalg.norm(affine[:3, 2]))
    nib.save(nib.Nifti1Image(data, affine), str(path))


def test_organ_share_comes_from_source_organ_spans_and_target_scan_lengths(tmp_path: Path, nnunet_factory,
                                                                           monkeypatch) -> None:
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    src = nnunet_factory("src", n_cases=4, shape=(6, 20, 20), spacing=(3.0, 1.5, 1.5), labels=LABELS, seed=0)
    tgt = nnunet_factory("tgt", n_cases=2, shape=(5, 20, 20), spacing=(8.0, 1.5, 1.5), labels=LABELS, seed=1)
    for folder, name in (("imagesTr", "case_001_0000"), ("labelsTr", "case_001")):  # cases that differ
        _respace(src / folder / f"{name}.nii.gz", 6.0)
    _respace(tgt / "imagesTr" / "case_001_0000.nii.gz", 2.0, depth=3)
    shutil.rmtree(tgt / "labelsTr")  # the estimate needs no target label
    data = prepare_training_data(Config.from_dict({"data": DATA, "loss": {"real_prior": "target"}}), src, tgt,
                                 progress=False)
    spans, src_len, src_mm = [], [], []
    for name in data.split["source_train"]:
        label = read_label(src / "labelsTr" / f"{name}.nii.gz")
        z = np.flatnonzero(label.array.reshape(label.shape[0], -1).any(1))
        spans.append((z[-1] - z[0] + 1) * label.spacing[0])
        src_len.append(label.shape[0])
        src_mm.append(label.spacing[0])
    assert len(set(src_mm)) == 2
    share = data.organ_share
    assert share.span_mm == pytest.approx(float(np.median(spans)))
    assert share.target == pytest.approx(expected_organ_fraction(share.span_mm, [5, 3], [8.0, 2.0]))
    assert share.source == pytest.approx(expected_organ_fraction(share.span_mm, src_len, src_mm))
    plain = prepare_training_data(Config.from_dict({"data": DATA, "loss": {"real_prior": "source"}}), src, tgt,
                                  progress=False)
    assert plain.organ_share is None
    assert prepare_training_data(Config.from_dict({"data": DATA}), src, tgt, progress=False).organ_share == share
    # 3D: the volumes are resampled to spacing_z, which then measures the slices of both
    cfg3 = Config.from_dict({"data": dict(DATA, spacing_z=4.0, patch=[8, 16, 16]), "train": {"dims": 3},
                             "loss": {"real_prior": "target"}})
    data3 = prepare_training_data(cfg3, src, tgt, progress=False)
    share3, tgt3 = data3.organ_share, data3.target_train.case_lengths.tolist()
    assert share3.span_mm % 4.0 == 0 and share3.target == pytest.approx(expected_organ_fraction(share3.span_mm, tgt3, [4.0] * 2))
    # 2D with data.spacing_z: the slices are resampled to it as in 3D, and it measures them
    cfg2 = Config.from_dict({"data": dict(DATA, spacing_z=4.0), "loss": {"real_prior": "target"}})
    data2 = prepare_training_data(cfg2, src, tgt, progress=False)
    assert data2.plans.dims == 2 and data2.plans.spacing_z == 4.0
    assert data2.target_train.case_lengths.tolist() == [round(5 * 8.0 / 4.0), round(3 * 2.0 / 4.0)]
    assert data2.organ_share.target == pytest.approx(
        expected_organ_fraction(data2.organ_share.span_mm, data2.target_train.case_lengths.tolist(), [4.0] * 2))


def test_no_organ_span_is_an_error_for_target_and_a_warning_for_auto(domains, tmp_path: Path, caplog) -> None:
    src, tgt = domains
    big = {**DATA, "size": [2048, 2048]}  # 0.1 % of the frame: more pixels than any organ here
    with pytest.raises(LmisaError, match="loss.real_prior: target: no source case has a slice with 4194 or more"):
        prepare_training_data(_cfg(data=big, loss={"real_prior": "target"}), src, tgt, progress=False)
    log = logging.getLogger("test")
    data = prepare_training_data(_cfg(data=big, loss={"real_prior": "auto"}), src, tgt, progress=False, log=log)
    assert data.organ_share is None and "real maps stay uniform" in caplog.text
    assert data.critic_window_off and "critic window (when beyond_source): off, no source case" in caplog.text
    with pytest.raises(LmisaError, match="loss.critic_window: no case of"):  # a window asked for everywhere
        prepare_training_data(_cfg(data=big, loss={"critic_window_when": "always"}), src, tgt, progress=False)


def test_trainer_applies_the_target_real_prior_or_says_why_not(domains, tmp_path: Path, caplog) -> None:
    src, tgt = domains
    cfg = _cfg(loss={"real_prior": "target"}, train={"batch_size": 2})
    data = prepare_training_data(cfg, src, tgt, progress=False)
    assert Trainer(cfg, data, tmp_path / "a", progress=False).real_fraction == data.organ_share.target
    by_hand = Trainer(cfg, replace(data, organ_share=None), tmp_path / "b", progress=False)
    assert by_hand.real_fraction is None and by_hand.real_sampler.organ_split is None  # uniform
    assert "no organ-share estimate" in caplog.text


def test_auto_real_prior_uses_the_target_estimate_only_where_it_is_higher(domains, tmp_path: Path, caplog) -> None:
    src, tgt = domains
    caplog.set_level(logging.INFO)
    cfg = _cfg(loss={"real_prior": "auto"}, train={"batch_size": 2})
    data = prepare_training_data(cfg, src, tgt, progress=False)
    assert data.organ_share is not None
    higher = Trainer(cfg, replace(data, organ_share=OrganShare(0.9, 0.5, 100.0)), tmp_path / "a", progress=False)
    assert higher.real_fraction == 0.9 and higher.real_sampler.organ_split is not None
    lower = Trainer(cfg, replace(data, organ_share=OrganShare(0.5, 0.9, 100.0)), tmp_path / "b", progress=False)
    assert lower.real_fraction is None and lower.real_sampler.organ_split is None  # the default's draws
    assert "real_prior auto: the target scans are estimated at 50 %, the source scans at 90 %" in caplog.text
    paper_like = _cfg(loss={"real_prior": "auto", "real_uniform": False})
    assert prepare_training_data(paper_like, src, tgt, progress=False).organ_share is None


@pytest.mark.parametrize("estimate, on", [(OrganShare(0.45, 0.78, 100.0), True), (OrganShare(0.72, 0.44, 100.0), False)])
def test_critic_window_beyond_source_applies_only_where_the_target_has_fewer_organ_slices(
        domains, tmp_path: Path, monkeypatch, caplog, estimate: OrganShare, on: bool) -> None:
    src, tgt = domains
    caplog.set_level(logging.INFO)
    monkeypatch.setattr("lmisa.training.data.estimate_organ_share", lambda *args: estimate)
    loss = {"critic_window": 1.1, "critic_window_when": "beyond_source", "real_prior": "source", "adv_warmup": 0.0}
    cfg = _cfg(loss=loss, train={"batch_size": 2})
    data = prepare_training_data(cfg, src, tgt, progress=False, log=logging.getLogger("test"))
    assert data.critic_window_off is (not on) and data.region_span_mm > 0
    assert ("critic window (when beyond_source): on" if on else "off, the target does not reach beyond") in caplog.text
    trainer = Trainer(cfg, data, tmp_path / "run", progress=False)
    trainer.place_critic_window()  # epoch 0 is past a warm-up of 0
    assert (trainer.target_sampler.allowed is not None) is on
    always = prepare_training_data(_cfg(loss={**loss, "critic_window_when": "always"}), src, tgt, progress=False)
    assert always.critic_window_off is False


# --- inputs refused before a run folder exists -------------------------------------------------------------------


def _no_run_folder_after(run: Path, message: str, *args, **kwargs) -> None:
    with pytest.raises(LmisaError, match=message) as err:
        train(*args, out=run, progress=False, **kwargs)
    assert "\n" not in str(err.value) and not run.exists()


def test_an_adapting_variant_without_a_target_is_refused(domains, tmp_path: Path) -> None:
    src, _ = domains
    _no_run_folder_after(tmp_path / "run", "variant lmisa needs the target domain's images: give --target",
                         src, None, variant="lmisa", overrides={"data": DATA})


def test_a_target_label_table_that_contradicts_the_sources_is_refused(domains, tmp_path: Path) -> None:
    from lmisa.datasets import Domain
    from lmisa.training.data import label_table_problems

    src, tgt = domains
    meta = json.loads((tgt / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "Spleen": 1, "liver": 2}
    (tgt / "dataset.json").write_text(json.dumps(meta))
    _no_run_folder_after(tmp_path / "run", r"dataset.json: labels differ from the source's \(Spleen: 1 \(source spleen: 2\)",
                         src, tgt, variant="lmisa", overrides={"data": DATA})
    for fine in ({"bg": 0, "Liver": 1}, {"background": 0, "organ": 1}):  # names aside, fewer labels, a placeholder
        meta["labels"] = fine
        (tgt / "dataset.json").write_text(json.dumps(meta))
        assert label_table_problems(Domain.open(src), Domain.open(tgt)) == []


def _restore(path: Path, affine: np.ndarray) -> None:
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), path)


def test_a_target_stored_flipped_is_turned_and_one_along_other_axes_refused(domains, tmp_path: Path) -> None:
    src, tgt = domains
    image, label = tgt / "imagesTr" / "case_001_0000.nii.gz", tgt / "labelsTr" / "case_001.nii.gz"
    before = np.asarray(nib.load(image).dataobj).transpose(2, 1, 0)  # (Z, Y, X)
    flipped = nib.load(image).affine @ np.diag([-1.0, 1.0, 1.0, 1.0])  # the same world, x stored right to left
    flipped[0, 3] = nib.load(image).affine[0, 0] * (before.shape[2] - 1)
    for path in (image, label):
        img = nib.load(path)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::-1], flipped), path)
    data = prepare_training_data(_cfg(augment=PLAIN), src, tgt, progress=False)
    assert data.plans.axis_codes == "RAS"
    cached = sorted((tmp_path / "cache").glob("tgt-*/*-axesRAS-nolabel/case_001.npz"))
    assert len(cached) == 1  # a folder of its own, never mistaken for the data set cached as stored
    again = prepare_training_data(_cfg(augment=PLAIN), src, tgt, progress=False, saved_plans=replace(data.plans, axis_codes=None))
    n = before.shape[0]
    turned_slices = data.target_train.inputs[-n:].float()
    stored_slices = again.target_train.inputs[-n:].float()  # a run from before the record: as stored
    torch.testing.assert_close(turned_slices, stored_slices.flip(-1))
    sagittal = np.array([[0, 0, 1.5, 0], [1.5, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 1]])
    _restore(image, sagittal)
    _restore(label, sagittal)
    _no_run_folder_after(tmp_path / "run", f"{image}: voxel axes ASR run along other anatomical axes than RAS",
                         src, tgt, variant="lmisa", overrides={"data": DATA})


def test_an_unknown_device_is_one_line_before_any_work(domains, tmp_path: Path) -> None:
    src, _ = domains
    _no_run_folder_after(tmp_path / "run", "--device gpu: not a device name", src, None, variant="source_only",
                         device="gpu", overrides={"data": DATA})


def test_a_crop_that_cuts_organs_from_labelled_cases_is_named_in_the_log(domains, caplog) -> None:
    src, tgt = domains
    log = logging.getLogger("test")
    prepare_training_data(_cfg(), src, tgt, progress=False, log=log)  # 24 x 24 holds the 20 x 20 cases whole
    assert "the crop cuts organ voxels" not in caplog.text
    prepare_training_data(_cfg(data={**DATA, "size": [8, 8]}), src, tgt, progress=False, log=log)
    assert "data.size 8x8 at 1.5x1.5 mm frames 12 x 12 mm: the crop cuts organ voxels from 3 of 3" in caplog.text


def test_channels_beyond_the_first_are_named_as_unread(domains, caplog) -> None:
    src, tgt = domains
    meta = json.loads((src / "dataset.json").read_text())
    meta["channel_names"] = {"0": "T1", "1": "T2"}
    (src / "dataset.json").write_text(json.dumps(meta))
    prepare_training_data(_cfg(), src, tgt, progress=False, log=logging.getLogger("test"))
    assert f"{src} declares channels 0, 1: lmisa reads channel 0 (T1) only" in caplog.text


def test_a_single_labelled_case_is_refused_before_a_run_folder(tmp_path: Path, nnunet_factory, monkeypatch) -> None:
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    one = nnunet_factory("one", n_cases=1, shape=(4, 20, 20), labels=LABELS)
    _no_run_folder_after(tmp_path / "run", "1 labelled case\\(s\\); training needs at least 2", one, None,
                         variant="source_only", overrides={"data": DATA})
