"""The CPU cores this process may use.

``os.cpu_count()`` counts the machine's cores; a process pinned by ``taskset`` or given a share of a
node by a batch scheduler may run on fewer. Thread and worker counts sized from the machine's count
oversubscribe the cores actually given (two benchmarks pinned to one core each would each start two
threads on a 2-core machine). The data set checks and the CPU benchmarks size their pools from
:func:`usable_cores`, and so does the preprocessing cache (``lmisa preprocess`` and each training run's own cache:
one worker per usable core, at most 8); a run's ``hardware.txt`` reports it.
"""

from __future__ import annotations

import os


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
