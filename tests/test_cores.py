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
