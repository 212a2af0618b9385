"""Export: TorchScript equal to the network, model.json describing the input, no overwriting, the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lmisa.cli import app
from lmisa.errors import LmisaError
from lmisa.export import DESCRIPTION, ONNX, TORCHSCRIPT, export_run
from lmisa.predict import load_run

LABELS = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
TINY = {
    "data": {"size": [32, 32], "spacing": [1.5, 1.5], "context_slices": 1},
    "model": {"widths": [8, 16, 32]},
    "train": {"batch_size": 2, "val_batches": 1, "epochs": 1, "steps_per_epoch": 1, "device": "cpu"},
}
HAS_ONNX = importlib.util.find_spec("onnx") is not None
runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from conftest import write_nnunet_dataset

    from lmisa.training import train

    tmp = tmp_path_factory.mktemp("run")
    src = write_nnunet_dataset(tmp / "src", n_cases=3, shape=(5, 24, 24), spacing=(3.0, 1.5, 1.5), labels=LABELS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMISA_CACHE", str(tmp / "cache"))
        return train(src, None, out=tmp / "run", variant="source_only", overrides=TINY, progress=False)


@pytest.fixture(scope="module")
def exported(run: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    return out, export_run(run, out)


def test_torchscript_gives_the_networks_output(run: Path, exported) -> None:
    out, result = exported
    assert (out / TORCHSCRIPT) in result.files and (out / DESCRIPTION) in result.files
    scripted = torch.jit.load(str(out / TORCHSCRIPT))
    net = load_run(run).net
    g = torch.Generator().manual_seed(1)
    for shape in [(3, 3, 32, 32), (1, 3, 48, 40)]:  # another batch size and size than the trace
        x = torch.randn(*shape, generator=g)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), net.forward_seg(x), atol=1e-5, rtol=1e-5)
    if HAS_ONNX:
        assert (out / ONNX).is_file() or any(ONNX in n for n in result.notes)
    else:
        assert not (out / ONNX).exists()
        assert any("onnx" in n and "not installed" in n for n in result.notes)


def test_model_json_describes_the_input(exported) -> None:
    out, _ = exported
    meta = json.loads((out / DESCRIPTION).read_text(encoding="utf-8"))
    inp, res = meta["input"], meta["output"]
    assert inp["shape"] == ["N", 3, 32, 32] and inp["channels"] == 3 and inp["context_slices"] == 1
    assert inp["representation"]["kind"] == "mlngm" and inp["representation"]["levels"] == 4
    # the default run computes MLNGM online in training: on the frame, after crop/pad, as prediction does
    assert inp["representation"]["on"].startswith("each channel of each framed sample")
    assert inp["steps"][-2].startswith("MLNGM of every channel") and "clip" in inp["steps"][2]
    assert inp["voxel_axes"] == "RAS" and inp["steps"][0].startswith("turn the volume into voxel axes RAS")
    assert inp["inplane_spacing_mm"] == [1.5, 1.5] and inp["size"] == [32, 32] and inp["size_multiple"] == 4
    assert inp["zscore_per_sample"] is True
    assert res["kind"] == "logits" and res["shape"] == ["N", 5, 32, 32]
    assert meta["labels"] == LABELS
    assert meta["postprocess"]["extent_cap_mm"] == {n: 13.2 for n in LABELS if n != "background"}  # 1.1 x 12 mm
    assert "floor(extent_cap_mm / slice spacing)" in meta["postprocess"]["extent_cap_how"]
    assert meta["files"] == {"torchscript": TORCHSCRIPT, "onnx": ONNX if (out / ONNX).exists() else None}


def test_existing_files_are_not_replaced(run: Path, tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / DESCRIPTION).write_text("mine")
    with pytest.raises(LmisaError, match="model.json: exists"):
        export_run(run, tmp_path / "exp")
    assert (tmp_path / "exp" / DESCRIPTION).read_text(encoding="utf-8") == "mine"
    assert not (tmp_path / "exp" / TORCHSCRIPT).exists()
    export_run(run, tmp_path / "exp", overwrite=True, onnx=False)
    assert json.loads((tmp_path / "exp" / DESCRIPTION).read_text(encoding="utf-8"))["format"] == "lmisa-export"


def test_cli_export(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = runner.invoke(app, ["export", str(run), str(out)])
    assert result.exit_code == 0, result.output
    assert (out / TORCHSCRIPT).is_file() and (out / DESCRIPTION).is_file()
    if not HAS_ONNX:
        assert "onnx" in result.output and "skipped" in result.output
    again = runner.invoke(app, ["export", str(run), str(out)])
    assert again.exit_code == 1 and "exists" in again.output and "Traceback" not in again.output
    missing = runner.invoke(app, ["export", str(tmp_path / "nope"), str(tmp_path / "o")])
    assert missing.exit_code == 1 and "run folder not found" in missing.output


def test_an_out_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(LmisaError, match="afile: exists and is not a folder"):
        export_run(tmp_path / "no_run", afile)  # refused before the run is read
    assert afile.read_text() == "mine"
