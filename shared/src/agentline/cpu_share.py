"""A smaller CPU share for a process that stands in for another machine on a one-box run.

`make dev` and the end-to-end benchmark run the whole system on one machine: the LiveKit
emulator and the agent worker (in production LiveKit's and the agents' own nodes) and the
benchmark's callers (the users' devices) share its cores with token-api, the dispatcher and
Redis. A Kubernetes cluster keeps those apart (other nodes, or CPU requests, which become
cgroup CPU weights on a shared node). The nearest one-box equivalent is a lower CPU weight for
the stand-ins: they still get every idle cycle, but the control plane, which needs little CPU
and sits on every call's critical path, does not queue behind their media bursts.

With ``sched_autogroup`` on (most desktop and many server kernels) the scheduler first shares
the CPU between sessions, so a process's nice value only counts inside its own session: the
weight that matters is the session's autogroup nice (``/proc/<pid>/autogroup``). Both are set
here; each process must lead its own session (``start_new_session=True``) so that only it and
its children yield. Raising a nice value needs no privilege.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

AUTOGROUP_SWITCH = Path("/proc/sys/kernel/sched_autogroup_enabled")
NICE_VALUES = range(0, 20)  # the weights a process may give itself: 0 (unchanged) to 19


def autogroup_enabled() -> bool:
    try:
        return AUTOGROUP_SWITCH.read_text().strip() == "1"
    except OSError:
        return False


def lower_cpu_weight(pid: int, nice: int) -> list[str]:
    """Give ``pid`` (a session leader) and the children it starts from now on the CPU weight of
    ``nice`` (0–19). Returns what was set (``nice``, ``autogroup``); empty when nothing could be
    (not Linux, or the process is gone)."""
    if nice not in NICE_VALUES:
        raise ValueError(f"nice must be between 0 and 19, not {nice}")
    applied: list[str] = []
    if nice == 0:
        return applied
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)
        applied.append("nice")
    if autogroup_enabled():
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))
            applied.append("autogroup")
    return applied
