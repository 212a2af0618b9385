"""Ensembles: several runs predicting as one (probabilities averaged), the checks on their members, and
``lmisa predict`` with ``-m`` given several times."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from lmisa.cli import app
from lmisa.config import Config
from lmisa.ensemble import Ensemble, load_ensemble
from lmisa.errors import LmisaError
from lmisa.io import MedicalImage, read_label, write_image
from lmisa.predict import LoadedModel, extent_caps, load_run, predict_volume
from lmisa.preprocess import Plans

runner = CliRunner()
THREE = {"background": 0, "liver": 1, "spleen": 2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two real tiny runs on one data set, seeds 0 and 1."""
    from conftest import LABELS, write_nnunet_dataset

    from lmisa.training import train

    tmp = tmp_path_factory.mktemp("ensemble")
    src = write_nnunet_dataset(tmp / "src", n_cases=3, shape=(5, 24, 24), spacing=(3.0, 1.5, 1.5), labels=LABELS)
    out = []
    for seed in (0, 1):
        overrides = {
            "data": {"size": [32, 32], "spacing": [1.5, 1.5]},
            "model": {"widths": [8, 16]},
            "train": {"batch_size": 2, "val_batches": 1, "epochs": 1, "steps_per_epoch": 2, "device": "cpu", "seed": seed},
        }
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LMISA_CACHE", str(tmp / "cache"))
            out.append(train(src, None, out=tmp / f"seed{seed}", variant="source_only", overrides=overrides, progress=False))
    return out[0], out[1]


def _image(shape=(4, 20, 28), seed=0) -> MedicalImage:
    rng = np.random.default_rng(seed)
    arr = rng.normal(0, 0.05, shape).astype(np.float32)
    arr[:, 5:10, 8:18] += 1.0
    return MedicalImage(arr, np.diag([1.6, 1.2, 4.0, 1.0]))


class _Constant(nn.Module):
    """The same class probabilities at every pixel."""

    def __init__(self, probs: list[float]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.log(torch.tensor(probs)), requires_grad=False)
        self.calls = 0

    def forward_seg(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.logits[None, :, None, None].expand(x.shape[0], -1, *x.shape[2:])


def _constant(probs: list[float], spacing=(1.5, 1.5), extents: dict[str, float] | None = None) -> LoadedModel:
    plans = Plans(spacing=spacing, size=(32, 32), input="raw", labels=dict(THREE), organ_extent_mm=extents or {})
    cfg = Config.from_dict({"data": {"input": "raw"}, "post": {"extent_margin": 0.0, "largest_component": False}})
    return LoadedModel(_Constant(probs), plans, cfg)


def test_probabilities_are_averaged_not_votes() -> None:
    # two members say liver, barely; one says spleen, surely: the vote is liver, the mean probability spleen
    unsure, sure = [0.001, 0.55, 0.449], [0.001, 0.01, 0.989]
    ensemble = Ensemble([_constant(unsure), _constant(unsure), _constant(sure)])
    image = _image()
    labels = predict_volume(ensemble, image)
    assert labels.shape == image.array.shape and labels.dtype == np.uint8
    inside = labels[:, 4:16, 4:24]  # the image's centre: inside the network's frame everywhere
    assert (inside == 2).all()
    assert (predict_volume(_constant(unsure), image)[:, 4:16, 4:24] == 1).all()
    assert all(m.net.calls == 1 for m in ensemble.members)  # one batch each


def test_test_time_augmentation_runs_every_member_over_its_views() -> None:
    ensemble = Ensemble([_constant([0.2, 0.5, 0.3]), _constant([0.2, 0.3, 0.5])])
    predict_volume(ensemble, _image(), tta=True)
    assert [m.net.calls for m in ensemble.members] == [5, 5]


def test_each_member_averages_only_the_views_it_trained_on() -> None:
    rigid = _constant([0.2, 0.5, 0.3])
    rigid.config.augment.enabled = False  # trained without rotations or zooms: the identity view only
    ensemble = Ensemble([_constant([0.2, 0.5, 0.3]), rigid])
    predict_volume(ensemble, _image(), tta=True)
    assert [m.net.calls for m in ensemble.members] == [5, 1]


def test_post_processing_follows_the_first_run(monkeypatch) -> None:
    import lmisa.postprocess

    calls = []
    monkeypatch.setattr(lmisa.postprocess, "keep_largest_component",
                        lambda labels, classes: calls.append(list(classes)) or labels)
    first, second = _constant([0.2, 0.5, 0.3]), _constant([0.2, 0.5, 0.3])
    first.config.post.largest_component = True
    predict_volume(Ensemble([first, second]), _image())
    assert calls == [[1, 2]]
    predict_volume(Ensemble([second, first]), _image())
    assert calls == [[1, 2]]  # this ensemble's first run keeps every component


def test_copies_of_one_run_predict_what_the_run_predicts(runs: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = runs
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    image = _image(shape=(5, 24, 24))
    np.testing.assert_array_equal(predict_volume(load_ensemble([run, copy]), image), predict_volume(load_run(run), image))


def test_two_seeds_predict_on_the_image_grid(runs: tuple[Path, Path]) -> None:
    ensemble = load_ensemble(list(runs))
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 2
    image = _image(shape=(5, 24, 24))
    labels = predict_volume(ensemble, image)
    assert labels.shape == image.array.shape and set(np.unique(labels)) <= set(range(5))


def test_one_run_is_loaded_as_itself(runs: tuple[Path, Path]) -> None:
    assert isinstance(load_ensemble([runs[0]]), LoadedModel)


def test_runs_that_prepare_images_differently_are_refused() -> None:
    with pytest.raises(LmisaError, match=r"prepares images unlike .*spacing \(2\.5, 2\.5\) against \(1\.5, 1\.5\)"):
        Ensemble([_constant([0.2, 0.5, 0.3]), _constant([0.2, 0.5, 0.3], spacing=(2.5, 2.5))])
    other_labels = _constant([0.2, 0.5, 0.3])
    other_labels.plans.labels = {"background": 0, "liver": 1, "kidney": 2}
    with pytest.raises(LmisaError, match="labels"):
        Ensemble([_constant([0.2, 0.5, 0.3]), other_labels])
    with pytest.raises(LmisaError, match="at least two runs"):
        Ensemble([_constant([0.2, 0.5, 0.3])])


def test_a_run_given_twice_or_none_is_refused(runs: tuple[Path, Path]) -> None:
    with pytest.raises(LmisaError, match="given twice"):
        load_ensemble([runs[0], runs[1], runs[0] / "."])
    with pytest.raises(LmisaError, match="given twice"):  # a run folder and its own checkpoint file
        load_ensemble([runs[0], runs[0] / "checkpoints" / "best.pt"])
    assert len(load_ensemble([runs[0], runs[0] / "checkpoints" / "latest.pt"]).members) == 2  # best and latest differ
    with pytest.raises(LmisaError, match="no run given"):
        load_ensemble([])


def test_the_extent_cap_takes_each_organs_longest_extent_over_the_members() -> None:
    a = _constant([0.2, 0.5, 0.3], extents={"liver": 200.0, "spleen": 100.0})
    b = _constant([0.2, 0.5, 0.3], extents={"liver": 180.0, "spleen": 120.0})
    caps = extent_caps(Ensemble([a, b]), 1.1)
    assert caps.keys() == {1, 2} and math.isclose(caps[1], 220.0) and math.isclose(caps[2], 132.0)
    without = _constant([0.2, 0.5, 0.3])
    without.checkpoint = Path("runs/old/checkpoints/best.pt")
    with pytest.raises(LmisaError, match="runs/old/checkpoints/best.pt: post.extent_margin 1.1"):
        extent_caps(Ensemble([a, without]), 1.1)
    assert extent_caps(Ensemble([a, without]), 0.0) == {}


def test_cli_predict_with_several_runs(runs: tuple[Path, Path], tmp_path: Path) -> None:
    image = _image(shape=(5, 24, 24))
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "case_0000.nii.gz", image)
    result = runner.invoke(app, ["predict", "-m", str(runs[0]), "-m", str(runs[1]), "-i", str(tmp_path / "in"),
                                 "-o", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = read_label(tmp_path / "out" / "case.nii.gz")
    np.testing.assert_array_equal(out.array, predict_volume(load_ensemble(list(runs)), image))
    twice = runner.invoke(app, ["predict", "-m", str(runs[0]), "-m", str(runs[0]), "-i", str(tmp_path / "in"),
                                "-o", str(tmp_path / "out2")])
    assert twice.exit_code != 0 and "given twice" in twice.output and len(twice.output.strip().splitlines()) == 1


def test_runs_trained_in_other_voxel_axes_are_refused_and_the_recorded_axes_apply() -> None:
    ras, lps, old = (_constant([0.2, 0.5, 0.3]) for _ in range(3))
    ras.plans = replace(ras.plans, axis_codes="RAS")
    lps.plans = replace(lps.plans, axis_codes="LPS")
    with pytest.raises(LmisaError, match="trained on images in voxel axes LPS, a run on RAS"):
        Ensemble([ras, lps])
    assert Ensemble([old, ras]).plans.axis_codes == "RAS"  # a run from before the record trained as stored
