"""benchmarks/run_on_gpu.sh runs only on a lent GPU machine: here it is at least checked to parse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "run_on_gpu.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_gpu_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
