"""benchmarks/reverse_validation.py on a tiny real run: it reads no target label, scores on the source, resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from conftest import LABELS, load_benchmark, train_tiny_run, write_nnunet_dataset

TINY = """
data: {size: [32, 32], spacing: [1.5, 1.5]}
model: {widths: [8, 16]}
train: {batch_size: 2, val_batches: 1, epochs: 1, steps_per_epoch: 1}
"""


@pytest.fixture(scope="module")
def reverse_validation() -> ModuleType:
    return load_benchmark("reverse_validation")


def test_scores_the_maps_on_the_source_without_target_labels_and_resumes(
    reverse_validation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    run = train_tiny_run(tmp_path / "fwd")
    source = tmp_path / "fwd" / "src"
    target = write_nnunet_dataset(tmp_path / "tgt", n_cases=3, shape=(5, 24, 24), labels=LABELS, seed=3, prefix="t")
    shutil.rmtree(target / "labelsTr")  # nothing of the target's labels can be read
    (target / "imagesTs").mkdir()  # a root with test images: the training images are still the ones labelled
    shutil.copy(next((target / "imagesTr").iterdir()), target / "imagesTs" / "t_test_0000.nii.gz")
    (tmp_path / "tiny.yaml").write_text(TINY)
    args = [str(run), "--source", str(source), "--target", str(target), "--config", str(tmp_path / "tiny.yaml"),
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "rev.json")]
    reverse_validation.main(args)
    (row,) = json.loads((tmp_path / "rev.json").read_text())
    assert 0 <= row["dice_reverse_organ_slices"] <= 100 and 0 <= row["dice_reverse_volume"] <= 100
    assert len(row["cases_reverse_volume"]) == len(list((source / "labelsTr").glob("*.nii.gz")))
    work = tmp_path / "work" / f"0_{run.name}"
    labels = sorted((work / "reverse_data" / "labelsTr").iterdir())
    assert [p.resolve().parent for p in labels] == [(work / "maps").resolve()] * 3
    latest = work / "reverse" / "checkpoints" / "latest.pt"
    stamp = latest.stat().st_mtime_ns
    reverse_validation.main(args)  # a finished reverse run is not retrained
    assert latest.stat().st_mtime_ns == stamp


def test_an_unfinished_run_is_refused(reverse_validation, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a finished run"):
        reverse_validation.main([str(tmp_path), "--source", str(tmp_path), "--target", str(tmp_path),
                                 "--config", "x.yaml", "--work", str(tmp_path), "--out", str(tmp_path / "x.json")])


def test_a_target_case_without_a_map_is_named(reverse_validation, tmp_path: Path) -> None:
    target = write_nnunet_dataset(tmp_path / "tgt", n_cases=2, shape=(4, 16, 16), labels=LABELS, prefix="t")
    maps = tmp_path / "maps"
    maps.mkdir()
    first, second = sorted(p.name.removesuffix("_0000.nii.gz") for p in (target / "imagesTr").iterdir())
    shutil.copy(target / "labelsTr" / f"{first}.nii.gz", maps / f"{first}.nii.gz")
    with pytest.raises(SystemExit, match=f"{second}.nii.gz: no map for target case {second}"):
        reverse_validation.reverse_data_set(target, maps, tmp_path / "rev")
