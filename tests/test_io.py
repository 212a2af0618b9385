import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lmisa.io import (
    ImageReadError, JsonFileError, MedicalImage, affine_from_sitk, read_image, read_json_object, read_label,
    slice_spacing_mm, write_image,
)


def test_roundtrip_keeps_geometry_and_orientation(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    affine = np.array([[-0.8, 0, 0, 10], [0, -0.8, 0, 20], [0, 0, 5.0, -30], [0, 0, 0, 1]])
    p = write_image(tmp_path / "a.nii.gz", MedicalImage(arr, affine))
    back = read_image(p)
    np.testing.assert_array_equal(back.array, arr)
    np.testing.assert_allclose(back.affine, affine)
    assert back.spacing == pytest.approx((5.0, 0.8, 0.8))
    # nibabel voxel (i, j, k) = array[k, j, i]
    raw = np.asanyarray(nib.load(str(p)).dataobj)
    assert raw.shape == (4, 3, 2) and raw[3, 2, 1] == arr[1, 2, 3]


def test_write_refuses_to_overwrite_and_is_atomic(tmp_path: Path) -> None:
    p = write_image(tmp_path / "a.nii.gz", np.zeros((2, 2, 2), np.float32))
    before = p.read_bytes()
    with pytest.raises(FileExistsError, match="a.nii.gz"):
        write_image(p, np.ones((2, 2, 2), np.float32))
    assert p.read_bytes() == before
    write_image(p, np.ones((2, 2, 2), np.float32), overwrite=True)
    assert read_image(p).array.max() == 1
    assert [f.name for f in tmp_path.iterdir()] == ["a.nii.gz"]  # no temporary left behind


def test_write_uses_reference_geometry(tmp_path: Path) -> None:
    ref = MedicalImage(np.zeros((2, 3, 4), np.float32), np.diag([2.0, 3.0, 4.0, 1.0]))
    p = write_image(tmp_path / "l.nii.gz", np.ones((2, 3, 4), np.uint8), like=ref)
    lab = read_label(p)
    assert lab.array.dtype == np.uint8
    np.testing.assert_allclose(lab.affine, ref.affine)


def test_missing_and_truncated_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="nothere.nii.gz"):
        read_image(tmp_path / "nothere.nii.gz")
    p = write_image(tmp_path / "t.nii.gz", np.random.rand(8, 16, 16).astype(np.float32))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="t.nii.gz"):
        read_image(p)
    bad = tmp_path / "junk.nii.gz"
    bad.write_bytes(gzip.compress(b"not a nifti"))
    with pytest.raises(ImageReadError, match="junk.nii.gz"):
        read_image(bad)


def test_label_rejects_fractional_values(tmp_path: Path) -> None:
    p = write_image(tmp_path / "f.nii.gz", np.full((2, 2, 2), 0.5, np.float32))
    with pytest.raises(ImageReadError, match="non-integer"):
        read_label(p)


def test_dicom_series_roundtrip(tmp_path: Path) -> None:
    sitk = pytest.importorskip("SimpleITK")
    from lmisa.io import read_dicom_series

    arr = (np.arange(3 * 8 * 10).reshape(3, 8, 10) % 200).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((1.0, 2.0, 3.0))
    import locale

    saved_locale = locale.setlocale(locale.LC_ALL)  # GDCM's writer switches the locale to "C"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(arr.shape[0]):
        sl = img[:, :, k]
        sl.SetMetaData("0020|0032", "\\".join(map(str, img.TransformIndexToPhysicalPoint((0, 0, k)))))
        sl.SetMetaData("0020|0013", str(k))
        sl.SetMetaData("0008|0060", "CT")
        sl.SetMetaData("0020|000e", "1.2.3.4.5")
        sl.SetMetaData("0020|000d", "1.2.3.4")
        sl.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        writer.SetFileName(str(tmp_path / f"{k:03d}.dcm"))
        writer.Execute(sl)
    locale.setlocale(locale.LC_ALL, saved_locale)
    vol = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(vol.array, arr.astype(np.float32))
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.7))
    np.testing.assert_allclose(vol.affine[:3, 3], [-1.0, -2.0, 3.0])
    assert callable(affine_from_sitk)


def test_slice_spacing_comes_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "a.nii.gz"
    write_image(path, MedicalImage(np.zeros((3, 4, 5), np.float32), np.diag([0.8, 0.9, 6.5, 1.0])))
    assert slice_spacing_mm(path) == pytest.approx(6.5)
    with pytest.raises(ImageReadError, match="b.nii.gz"):
        slice_spacing_mm(tmp_path / "b.nii.gz")


def test_a_folder_without_dicom_is_not_one_and_gdcm_stays_quiet(tmp_path, capfd) -> None:
    from lmisa.io import is_dicom_folder

    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not DICOM")
    assert not is_dicom_folder(tmp_path / "empty") and not is_dicom_folder(tmp_path / "text")
    captured = capfd.readouterr()
    assert "GDCM" not in captured.err + captured.out


def test_written_files_get_a_new_files_usual_permissions(tmp_path: Path) -> None:
    """Outputs pass through an owner-only temporary file; what lands is readable as any new file is (the umask)."""
    import os
    import stat

    from lmisa.io import atomic_write, write_text_atomic
    from lmisa.training.checkpoint import save_checkpoint

    for umask in (0o022, 0o077):  # the umask in force when the file is written
        before = os.umask(umask)
        try:
            written = [
                write_image(tmp_path / "a.nii.gz", MedicalImage(np.zeros((2, 3, 4), np.uint8), np.eye(4)), overwrite=True),
                write_text_atomic(tmp_path / "b.json", "{}"),
            ]
            save_checkpoint({"x": 1}, tmp_path / "c.pt")
        finally:
            os.umask(before)
        for path in [*written, tmp_path / "c.pt"]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, (path, oct(umask))
    with pytest.raises(RuntimeError):  # a failed write leaves nothing, not even its temporary file
        with atomic_write(tmp_path / "d.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "b.json", "c.pt"]


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{", r"invalid JSON \(line 1 column 2: "),
        ("[1, 2]", "expected a JSON object, got list"),
        (b"\xff\xfe{}", r"unreadable \(UnicodeDecodeError: "),
        (None, "not found$"),
    ],
)
def test_json_objects_that_cannot_be_read_name_the_file(tmp_path: Path, content, reason: str) -> None:
    path = tmp_path / "meta.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(JsonFileError, match=f"^{path}: {reason}") as caught:
        read_json_object(path)
    assert caught.value.path == path and str(caught.value) == f"{path}: {caught.value.reason}"


def test_a_json_object_is_read_as_utf8(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text('{"name": "Leber \\u00e4", "n": 1}', encoding="utf-8")
    assert read_json_object(tmp_path / "meta.json") == {"name": "Leber ä", "n": 1}
