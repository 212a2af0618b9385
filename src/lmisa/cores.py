"""The CPU this process runs on: its model and the cores it may use.

``os.cpu_count()`` counts the machine's cores; a process pinned by ``taskset`` or given a share of a
node by a batch scheduler may run on fewer. Thread and worker counts sized from the machine's count
oversubscribe the cores actually given (two benchmarks pinned to one core each would each start two
threads on a 2-core machine). The data set checks and the CPU benchmarks size their pools from
:func:`usable_cores`, and so does the preprocessing cache (``lmisa preprocess`` and each training run's own cache:
one worker per usable core, at most 8); a run's ``hardware.txt`` reports it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def usable_cores() -> int:
    """The cores in this process's CPU affinity where the OS has one, else the machine's cores.

    >>> usable_cores() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this OS (macOS, Windows)
        return os.cpu_count() or 1


def describe_cores() -> str:
    """``"N cores"``, or ``"N of M cores"`` when the affinity leaves this process fewer than the machine has."""
    usable, total = usable_cores(), os.cpu_count() or 1
    return f"{usable} cores" if usable >= total else f"{usable} of {total} cores"


def cpu_model() -> str:
    """The CPU's model name (Linux: ``/proc/cpuinfo``; elsewhere what ``platform`` knows), so that a run's
    ``hardware.txt`` tells CPUs apart whose bf16 kernels differ: three MR -> CT seeds trained again on an AMX Xeon
    moved by -0.4 to +1.3 points against their records from another session, whose hardware line named no CPU model, while two runs of
    one seed on one CPU gave the same losses (docs/RESULTS.md 2am).

    >>> isinstance(cpu_model(), str) and cpu_model() != ""
    True
    """
    try:
        for line in CPUINFO.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
