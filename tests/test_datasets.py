import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lmisa.datasets import Case, Domain, Problem, check_domain, load_split, save_split, split_cases
from lmisa.errors import LmisaError
from lmisa.io import MedicalImage, read_image, write_image


def _messages(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def _one(problems: list[Problem], path: Path, *words: str) -> Problem:
    """The single problem about ``path`` whose message holds every word."""
    hits = [p for p in problems if p.path == path and all(w in p.message for w in words)]
    assert len(hits) == 1, (path, words, _messages(problems))
    return hits[0]


# ---------------------------------------------------------------------------------------------- Domain


def test_domain_reads_dataset_json_and_lists_cases(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=3, labels={"background": 0, "liver": 1, "spleen": 2})
    d = Domain.open(root)
    assert d.root == root and d.name == "ds"
    assert d.labels == {"background": 0, "liver": 1, "spleen": 2}
    assert d.label_names == ["background", "liver", "spleen"] and d.num_classes == 3
    assert d.file_ending == ".nii.gz" and d.channel_names == {"0": "CT"}
    cases = d.cases()
    assert [c.name for c in cases] == ["case_000", "case_001", "case_002"]
    assert cases[1] == Case("case_001", root / "imagesTr" / "case_001_0000.nii.gz", root / "labelsTr" / "case_001.nii.gz")
    assert d.cases("test") == []
    assert d.case("case_002").label == root / "labelsTr" / "case_002.nii.gz"
    with pytest.raises(LmisaError, match="nope"):
        d.case("nope")


def test_domain_label_names_follow_values_and_test_split(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=1, labels={"background": 0, "b": 2, "a": 1})
    (root / "imagesTs").mkdir()
    img = root / "imagesTr" / "case_000_0000.nii.gz"
    (root / "imagesTs" / "zz_0000.nii.gz").write_bytes(img.read_bytes())
    (root / "imagesTs" / "aa_0001.nii.gz").write_bytes(img.read_bytes())  # another channel: not listed
    d = Domain.open(root)
    assert d.label_names == ["background", "a", "b"]
    assert d.cases("test") == [Case("zz", root / "imagesTs" / "zz_0000.nii.gz", None)]
    assert d.case("zz").label is None


def test_domain_open_errors_name_the_file(tmp_path: Path, nnunet_factory) -> None:
    with pytest.raises(LmisaError, match="not found"):
        Domain.open(tmp_path / "missing")
    root = nnunet_factory()
    (root / "dataset.json").unlink()
    with pytest.raises(LmisaError, match=r"dataset\.json: missing"):
        Domain.open(root)
    (root / "dataset.json").write_text('{"labels": {"background": 0,}')
    with pytest.raises(LmisaError, match=r"dataset\.json: invalid JSON \(line 1"):
        Domain.open(root)
    (root / "dataset.json").write_text('{"name": "x"}')
    with pytest.raises(LmisaError, match=r'dataset\.json: no "labels"'):
        Domain.open(root)


def test_domain_from_images(tmp_path: Path) -> None:
    arr = np.zeros((2, 3, 4), np.float32)
    for name in ["b.nii.gz", "a_0000.nii.gz", "a_0001.nii.gz", "c.nii"]:
        write_image(tmp_path / name, arr)
    (tmp_path / "notes.txt").write_text("x")
    d = Domain.from_images(tmp_path)
    assert [(c.name, c.image.name, c.label) for c in d.cases()] == [
        ("a", "a_0000.nii.gz", None),
        ("b", "b.nii.gz", None),
        ("c", "c.nii", None),
    ]
    assert d.labels == {} and d.case("b").image.name == "b.nii.gz"
    with pytest.raises(LmisaError, match="not found"):
        Domain.from_images(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- check


def test_clean_dataset_has_no_problem(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=3, labels={"background": 0, "a": 1, "b": 2})
    assert check_domain(root) == []
    assert check_domain(Domain.open(root), workers=1) == []


def test_reports_all_problems_in_one_run(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=4)
    images, labels = root / "imagesTr", root / "labelsTr"
    (labels / "case_000.nii.gz").unlink()  # missing label
    small = read_image(images / "case_001_0000.nii.gz")
    write_image(labels / "case_001.nii.gz", MedicalImage(np.zeros((6, 32, 30), np.uint8), small.affine), overwrite=True)
    lab = read_image(labels / "case_002.nii.gz", dtype=None)
    lab.array[0, 0, :3] = [7, 9, 7]  # undeclared values
    write_image(labels / "case_002.nii.gz", lab, overwrite=True)

    problems = check_domain(root)
    assert len(problems) == 3, _messages(problems)
    _one(problems, images / "case_000_0000.nii.gz", "no label map")
    _one(problems, labels / "case_001.nii.gz", "shape (6, 32, 30)", "(6, 32, 32)")
    p = _one(problems, labels / "case_002.nii.gz", "[7, 9]", "not declared")
    assert str(p) == f"{labels / 'case_002.nii.gz'}: {p.message}" and "\n" not in str(p)


def test_truncated_gzip(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=2)
    f = root / "imagesTr" / "case_001_0000.nii.gz"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    _one(check_domain(root), f, "truncated")


def test_nan_and_inf_in_image(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=2)
    f = root / "imagesTr" / "case_000_0000.nii.gz"
    img = read_image(f)
    img.array[1, 2, 3] = np.nan
    img.array[1, 2, 4] = np.inf
    write_image(f, img, overwrite=True)
    problems = check_domain(root)
    assert len(problems) == 1
    _one(problems, f, "1 NaN", "1 Inf")


def test_values_too_large_for_float32_are_named(nnunet_factory) -> None:
    """Finite, but float32 sums over them overflow: refused before a cache full of NaN is written."""
    root = nnunet_factory(n_cases=2)
    f = root / "imagesTr" / "case_001_0000.nii.gz"
    img = read_image(f)
    img.array[1, 2, 3] = 9e37
    write_image(f, img, overwrite=True)
    _one(check_domain(root), f, "image values reach 9e+37", "rescale")


def test_4d_and_2d_images(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=2)
    f4 = root / "imagesTr" / "case_000_0000.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 6, 2), np.float32), np.eye(4)), str(f4))
    f2 = root / "imagesTr" / "case_001_0000.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((32, 32), np.float32), np.eye(4)), str(f2))
    problems = check_domain(root)
    _one(problems, f4, "3D", "4D")
    _one(problems, f2, "3D", "2D")
    assert len(problems) == 2, _messages(problems)


@pytest.mark.parametrize(
    ("change", "word"),
    [
        (lambda a: a @ np.diag([1.0, 1.0, 1.2, 1.0]), "spacing"),
        (lambda a: a + np.array([[0, 0, 0, 2.0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]), "origin"),
        (lambda a: np.diag([-1.0, 1.0, 1.0, 1.0]) @ a, "direction"),
    ],
)
def test_geometry_mismatch_says_which(nnunet_factory, change, word) -> None:
    root = nnunet_factory(n_cases=2)
    f = root / "labelsTr" / "case_001.nii.gz"
    lab = read_image(f, dtype=None)
    write_image(f, MedicalImage(lab.array, change(lab.affine)), overwrite=True)
    problems = check_domain(root)
    p = _one(problems, f, "geometry", word)
    others = {"spacing", "origin", "direction"} - {word}
    assert not any(f"{w} (" in p.message for w in others), p.message
    assert len(problems) == 1


def test_geometry_within_tolerance_is_fine(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=1)
    f = root / "labelsTr" / "case_000.nii.gz"
    lab = read_image(f, dtype=None)
    write_image(f, MedicalImage(lab.array, lab.affine @ np.diag([1.0 + 1e-5, 1.0, 1.0, 1.0])), overwrite=True)
    assert check_domain(root) == []


def test_empty_and_missing_images_folder(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=2)
    for f in (root / "imagesTr").iterdir():
        f.unlink()
    problems = check_domain(root)
    _one(problems, root / "imagesTr", "no images")
    for name in ["case_000.nii.gz", "case_001.nii.gz"]:
        _one(problems, root / "labelsTr" / name, "without image")
    (root / "imagesTr").rmdir()
    _one(check_domain(root), root / "imagesTr", "missing")


def test_missing_and_broken_dataset_json(tmp_path: Path, nnunet_factory) -> None:
    root = nnunet_factory(n_cases=1)
    meta = root / "dataset.json"
    meta.unlink()
    _one(check_domain(root), meta, "missing")
    meta.write_text("not json")
    _one(check_domain(root), meta, "invalid JSON")
    meta.write_text(json.dumps({"labels": {}, "file_ending": ".nii.gz"}))
    _one(check_domain(root), meta, 'no "labels"')
    meta.write_text(json.dumps({"labels": {"liver": 1}, "channel_names": {"0": "CT"}}))
    problems = check_domain(root)
    _one(problems, meta, "background")
    assert check_domain(tmp_path / "nowhere") == [Problem(tmp_path / "nowhere", "data set folder not found")]


def test_names_pairing_and_label_values(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=4)
    images, labels = root / "imagesTr", root / "labelsTr"
    (images / "case_000_0000.nii.gz").rename(images / "case_000.nii.gz")  # no channel suffix
    (images / "case_001_0000.nii.gz").unlink()  # label without image
    (images / "notes.txt").write_text("x")
    lab = read_image(labels / "case_002.nii.gz", dtype=np.float32)
    lab.array[0, 0, 0] = 0.5
    write_image(labels / "case_002.nii.gz", lab, overwrite=True)
    (images / "case_003_0001.nii.gz").write_bytes((images / "case_003_0000.nii.gz").read_bytes())
    problems = check_domain(root)
    _one(problems, images / "case_000.nii.gz", "_0000.nii.gz")
    _one(problems, labels / "case_001.nii.gz", "without image")
    _one(problems, images / "notes.txt", "not an image")
    _one(problems, labels / "case_002.nii.gz", "non-integer")
    _one(problems, images / "case_003_0001.nii.gz", "channel 0001", "not declared")
    _one(problems, root / "dataset.json", "numTraining", "4")
    assert len(problems) == 6, _messages(problems)


def test_unlabelled_target_domain_and_test_images(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=2)
    for f in (root / "labelsTr").iterdir():
        f.unlink()
    assert len(check_domain(root)) == 2
    assert check_domain(root, require_labels=False) == []
    (root / "labelsTr").rmdir()
    _one(check_domain(root), root / "labelsTr", "missing")
    assert check_domain(root, require_labels=False) == []
    (root / "imagesTs").mkdir()
    bad = root / "imagesTs" / "t_0000.nii.gz"
    bad.write_bytes(b"garbage")
    _one(check_domain(root, require_labels=False), bad, "")


def test_progress_callback(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=3)
    calls = []
    check_domain(root, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 3) and calls[-1] == (3, 3) and len(calls) == 4


@pytest.mark.real_data
def test_real_abdomen_data_is_clean(abdomen: Path) -> None:
    start = time.perf_counter()
    for name in ["CT_BTCV", "MR_CHAOS_T2"]:
        assert check_domain(abdomen / name) == [], name
    assert time.perf_counter() - start < 60


# ---------------------------------------------------------------------------------------------- splits


def test_split_is_deterministic_order_independent_and_by_case() -> None:
    names = [f"c{i:02d}" for i in range(10)]
    a = split_cases(names, 0.2, seed=3)
    assert a == split_cases(list(reversed(names)), 0.2, seed=3)
    assert len(a["val"]) == 2 and len(a["train"]) == 8
    assert sorted(a["train"] + a["val"]) == names and not set(a["train"]) & set(a["val"])
    assert a["train"] == sorted(a["train"]) and a["val"] == sorted(a["val"])
    assert any(split_cases(names, 0.2, seed=s) != a for s in range(5))


@pytest.mark.parametrize(("n", "n_val"), [(0, 0), (1, 0), (2, 1), (3, 1), (24, 5), (16, 3)])
def test_split_sizes(n: int, n_val: int) -> None:
    s = split_cases([f"x{i}" for i in range(n)], 0.2)
    assert len(s["val"]) == n_val and len(s["train"]) == n - n_val


def test_split_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        split_cases(["a", "a", "b"])
    with pytest.raises(ValueError):
        split_cases(["a", "b"], val_fraction=1.0)


def test_save_and_load_split(tmp_path: Path) -> None:
    s = split_cases(["a", "b", "c", "d", "e"])
    p = save_split(s, tmp_path / "split.json")
    assert load_split(p) == s
    with pytest.raises(FileExistsError):
        save_split(s, p)
    save_split({"train": ["a"], "val": ["b"]}, p, overwrite=True)
    assert load_split(p) == {"train": ["a"], "val": ["b"]}
    p.write_text('{"train": ["a"], "val": ["a"]}')
    with pytest.raises(LmisaError, match="split.json.*both"):
        load_split(p)
    with pytest.raises(LmisaError, match="not found"):
        load_split(tmp_path / "none.json")
    p.write_text("{")
    with pytest.raises(LmisaError, match=r"split\.json: invalid JSON \(line 1"):
        load_split(p)
    p.write_text('[["a"], ["b"]]')
    with pytest.raises(LmisaError, match=r"split\.json: expected a JSON object, got list"):
        load_split(p)


def test_link_subset_refuses_a_folder_holding_other_cases(nnunet_factory, tmp_path) -> None:
    from lmisa.datasets import link_subset

    src = nnunet_factory("full", n_cases=3)
    link_subset(src, tmp_path / "sub", ["case_000", "case_001"])
    link_subset(src, tmp_path / "sub", ["case_000", "case_001"])  # same subset again: fine
    with pytest.raises(LmisaError, match="outside this subset"):
        link_subset(src, tmp_path / "sub", ["case_000"])
    unlabelled = link_subset(src, tmp_path / "unl", ["case_002"], with_labels=False)
    assert not (unlabelled / "labelsTr").exists()


def test_an_nnunet_v1_label_table_is_named_as_such(nnunet_factory) -> None:
    root = nnunet_factory("v1", n_cases=1)
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"0": "background", "1": "organ"}
    (root / "dataset.json").write_text(json.dumps(meta))
    p = _one(check_domain(root), root / "dataset.json", "nnU-Net v1")
    assert '{"background": 0, "organ": 1}' in p.message
