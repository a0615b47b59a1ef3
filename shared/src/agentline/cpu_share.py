"""A smaller CPU share for the processes that stand in for other machines on a one-box run.

`make dev` and the end-to-end benchmark run the whole system on one machine: the LiveKit
emulator and the agent worker (in production LiveKit's and the agents' own nodes) and the
benchmark's callers (the users' devices) share its cores with token-api, the dispatcher and
Redis. A Kubernetes cluster keeps those apart (other nodes, or CPU requests, which become
cgroup CPU weights on a shared node). The one-box equivalent: the stand-ins get every cycle
the control plane does not want, and the control plane, which needs little CPU and sits on
every call's critical path, does not queue behind their media bursts.

Two ways, the first one this machine allows (:class:`StandinShare`):

- ``idle``: a cgroup of their own with ``cpu.idle`` set. The scheduler then runs a waking
  control-plane process at once instead of at the next tick (measured here with three busy
  stand-ins: a 2 ms sleep woke p99 0.1 ms late, against 3.9 ms at nice 10, max 8 ms). Needs
  write access to the CPU controller's hierarchy (root, or a delegated cgroup v2 subtree).
- ``nice``: a lower nice value. With ``sched_autogroup`` on (most desktop and many server
  kernels) the scheduler first shares the CPU between sessions, so a nice value only counts
  inside its own session: the weight that matters is the session's autogroup nice
  (``/proc/<pid>/autogroup``). Both are set; each process must lead its own session
  (``start_new_session=True``) so that only it and its children yield. Needs no privilege,
  but a waking process may still wait for the next scheduler tick (4 ms at HZ=250).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

AUTOGROUP_SWITCH = Path("/proc/sys/kernel/sched_autogroup_enabled")
NICE_VALUES = range(0, 20)  # the weights a process may give itself: 0 (unchanged) to 19
SHARE_MODES = ("idle", "nice", "off")  # idle falls back to nice where cgroups are not writable
GROUP_PREFIX = "agentline-standins-"
# A run that starts another (the benchmark, `make dev`) hands its group down: one idle group.
SHARED_GROUP_ENV = "AGENTLINE_STANDIN_CGROUP"
_group_numbers = itertools.count(1)  # one process may make several groups


def autogroup_enabled() -> bool:
    try:
        return AUTOGROUP_SWITCH.read_text().strip() == "1"
    except OSError:
        return False


def lower_cpu_weight(pid: int, nice: int) -> list[str]:
    """Give ``pid`` (a session leader) and the children it starts from now on the CPU weight of
    ``nice`` (0–19). Returns what was set (``nice``, ``autogroup``); empty when nothing could be
    (not Linux, or the process is gone)."""
    _check_nice(nice)
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


def _check_nice(nice: int) -> None:
    if nice not in NICE_VALUES:
        raise ValueError(f"nice must be between 0 and 19, not {nice}")


def _own_cpu_cgroup() -> Path | None:
    """The directory of this process's cgroup in the hierarchy that holds the CPU controller
    (cgroup v1 ``cpu`` or the v2 unified one), or None."""
    try:
        memberships = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    v1_path = v2_path = None
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            v1_path = path
        elif controllers == "":
            v2_path = path
    for line in mounts:
        fields = line.split()
        separator = fields.index("-")
        mount_point, fstype, options = fields[4], fields[separator + 1], fields[separator + 3]
        if v1_path and fstype == "cgroup" and "cpu" in options.split(","):
            return Path(mount_point) / v1_path.lstrip("/")
        if not v1_path and v2_path and fstype == "cgroup2":
            return Path(mount_point) / v2_path.lstrip("/")
    return None


class IdleCgroup:
    """A cgroup with ``cpu.idle`` set: its processes run only when nothing else wants the CPU
    (weight 3 against the default 1024) and any other process preempts them when it wakes.
    Each process added gets a child group of its own, so that the stand-ins share what they
    get evenly, as their sessions' autogroups would (the media relay is not crowded out by
    the process with the most threads)."""

    def __init__(self, path: Path, owned: bool = True) -> None:
        self.path = path
        self.owned = owned  # made here (removed by remove()), or handed down by a parent run
        self._children: list[Path] = []

    @classmethod
    def create(cls) -> IdleCgroup | None:
        """The group a parent run handed down (``AGENTLINE_STANDIN_CGROUP``), else a new one
        below this process's own; None where the machine does not let us (no CPU controller,
        no ``cpu.idle`` (kernels before 5.15), no write access)."""
        handed_down = os.environ.get(SHARED_GROUP_ENV)
        if handed_down and (Path(handed_down) / "cpu.idle").is_file():
            return cls(Path(handed_down), owned=False)
        parent = _own_cpu_cgroup()
        if parent is None:
            return None
        _remove_stale_groups(parent)
        path = parent / f"{GROUP_PREFIX}{os.getpid()}-{next(_group_numbers)}"
        try:
            path.mkdir()
            (path / "cpu.idle").write_text("1")
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        with contextlib.suppress(OSError):  # cgroup v2: let the children weigh themselves
            (path / "cgroup.subtree_control").write_text("+cpu")
        return cls(path)

    def add(self, pid: int, name: str) -> bool:
        """Move ``pid`` into a child group ``name-pid``; the children it starts from now on
        are born in it."""
        child = self.path / f"{name}-{pid}"
        self._children.append(child)  # removed by remove(), whether or not pid got in
        return _move_into(child, pid)

    def remove(self) -> None:
        """Hand what still runs in the groups made here back to the parent, then remove them
        (an owned group with every child group in it, made here or by a process that joined
        it: :func:`join_handed_down_group`)."""
        outside = self.path.parent
        groups = list(self._children)
        if self.owned:
            with contextlib.suppress(OSError):
                groups += [child for child in self.path.iterdir() if child.is_dir()]
            groups.append(self.path)
        for group in dict.fromkeys(groups):
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (outside / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                group.rmdir()
        self._children.clear()


def join_handed_down_group(name: str) -> bool:
    """Move this process into the child group ``name`` of the stand-ins' idle group that the
    run which started it handed down (``AGENTLINE_STANDIN_CGROUP``). For a process of ours that
    does a stand-in's work: the agent worker's job processes (the agents' media) join it, while
    the worker itself (job acceptance, reports) keeps the control plane's share. False when no
    group was handed down (production) or the machine refused."""
    handed_down = os.environ.get(SHARED_GROUP_ENV)
    if not handed_down:
        return False
    return _move_into(Path(handed_down) / name, os.getpid())


def _move_into(group: Path, pid: int) -> bool:
    """Move ``pid`` into ``group`` (made when missing); False when it is gone or refused."""
    try:
        group.mkdir(exist_ok=True)
        (group / "cgroup.procs").write_text(str(pid))
    except OSError:
        return False
    return True


def _remove_stale_groups(parent: Path) -> None:
    """Groups left by runs that were killed: an empty cgroup can be removed, a busy one not."""
    with contextlib.suppress(OSError):
        for stale in parent.glob(f"{GROUP_PREFIX}*"):
            owner = stale.name.removeprefix(GROUP_PREFIX).split("-")[0]  # PREFIX<pid>-<n>
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                for group in [*(c for c in stale.iterdir() if c.is_dir()), stale]:
                    with contextlib.suppress(OSError):
                        group.rmdir()


class StandinShare:
    """The CPU share given to stand-in processes: ``idle`` (an idle cgroup, else ``nice``),
    ``nice`` (``nice`` value and autogroup) or ``off``. :attr:`applied` says what took effect."""

    def __init__(self, mode: str = "idle", nice: int = 10) -> None:
        if mode not in SHARE_MODES:
            raise ValueError(f"mode must be one of {', '.join(SHARE_MODES)}, not {mode!r}")
        _check_nice(nice)  # at start, not at the first stand-in
        self.mode = mode
        self.nice = nice
        self.group = IdleCgroup.create() if mode == "idle" else None
        if self.group is not None:
            self.applied = f"idle (cgroup {self.group.path})"
        elif mode == "off" or nice == 0:
            self.applied = "off"
        else:
            self.applied = f"nice {nice}" + (" (no writable cgroup for idle)" * (mode == "idle"))

    def apply(self, pid: int, name: str) -> None:
        """Give ``pid`` (named ``name``), which leads its own session, the stand-ins' share."""
        if self.mode == "off":
            return
        # The nice value too: it still counts if the group cannot take the process.
        lower_cpu_weight(pid, self.nice)
        if self.group is not None:
            self.group.add(pid, name)

    def close(self) -> None:
        if self.group is not None:
            self.group.remove()
            self.group = None
