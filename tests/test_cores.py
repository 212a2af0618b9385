import pytest

from lmisa import cores


@pytest.fixture
def pinned_to_one_of_16(monkeypatch):
    """``taskset -c 0`` on a 16-core machine."""
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(cores.os, "cpu_count", lambda: 16)


def test_usable_cores_follow_the_cpu_affinity(pinned_to_one_of_16, monkeypatch) -> None:
    assert cores.usable_cores() == 1
    monkeypatch.delattr(cores.os, "sched_getaffinity")  # macOS, Windows
    assert cores.usable_cores() == 16


def test_describe_cores_says_when_the_affinity_leaves_fewer(pinned_to_one_of_16, monkeypatch) -> None:
    assert cores.describe_cores() == "1 of 16 cores"
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert cores.describe_cores() == "16 cores"


def test_hardware_line_names_the_usable_cores(pinned_to_one_of_16) -> None:
    from lmisa.training.trainer import describe_device

    assert "1 of 16 cores" in describe_device("cpu")


def test_cpu_model_is_read_from_cpuinfo(tmp_path, monkeypatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC  9B14 96-Core Processor\n")
    monkeypatch.setattr(cores, "CPUINFO", cpuinfo)
    assert cores.cpu_model() == "AMD EPYC 9B14 96-Core Processor"


def test_cpu_model_falls_back_to_platform_without_cpuinfo(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cores, "CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(cores.platform, "processor", lambda: "")
    monkeypatch.setattr(cores.platform, "machine", lambda: "arm64")
    assert cores.cpu_model() == "arm64"


def test_hardware_line_names_the_cpu_model_and_its_bf16_instructions(tmp_path, monkeypatch) -> None:
    from lmisa import precision
    from lmisa.training.trainer import describe_device

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU 9000\n")
    monkeypatch.setattr(cores, "CPUINFO", cpuinfo)
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: "amx")
    line = describe_device("cpu")
    assert line.startswith("CPU Test CPU 9000 (") and "bf16 through amx" in line
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: None)
    assert "bf16" not in describe_device("cpu")
