"""The stand-ins' smaller CPU share (agentline.cpu_share): an idle cgroup, or a lower nice value,
and devrun's settings for it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentline import devrun
from agentline.cpu_share import (
    GROUP_PREFIX,
    SHARED_GROUP_ENV,
    StandinShare,
    autogroup_enabled,
    join_handed_down_group,
    lower_cpu_weight,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux scheduler settings")


def test_a_session_leader_and_its_later_children_get_the_weight() -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; time.sleep(0.5); "
         "child = subprocess.Popen([sys.executable, '-c', 'import os; print(os.nice(0))'], "
         "stdout=sys.stdout); child.wait()"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        applied = lower_cpu_weight(leader.pid, 7)
        assert "nice" in applied
        assert os.getpriority(os.PRIO_PROCESS, leader.pid) == 7
        if autogroup_enabled():
            assert "autogroup" in applied
            assert Path(f"/proc/{leader.pid}/autogroup").read_text().split()[-1] == "7"
        out, _ = leader.communicate(timeout=20)
        assert out.strip() == "7"  # a child started afterwards inherits it
    finally:
        leader.kill()
        leader.wait()


def test_zero_changes_nothing_and_out_of_range_is_refused() -> None:
    assert lower_cpu_weight(os.getpid(), 0) == []
    for bad in (-1, 20):
        with pytest.raises(ValueError, match="between 0 and 19"):
            lower_cpu_weight(os.getpid(), bad)


@pytest.mark.parametrize(
    ("flag", "value", "setting"),
    [
        *(("--standin-nice", v, "AGENTLINE_DEV_STANDIN_NICE") for v in ("20", "-3", "ten")),
        *(("--standin-cpu", v, "AGENTLINE_DEV_STANDIN_CPU") for v in ("fast", "IDLE", "")),
    ],
)
def test_devrun_names_a_bad_standin_setting(
    flag: str, value: str, setting: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        devrun.main([flag, value])
    assert exited.value.code == 2
    assert setting in capsys.readouterr().err


# --- the idle cgroup (root, or a delegated cgroup v2 subtree; CI runs as root) ---------------


def _relative_cpu_path(pid: int) -> str:
    """``pid``'s cgroup in the CPU controller's hierarchy (cgroup v1 ``cpu``, else v2)."""
    lines = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    v1 = [path for _, controllers, path in lines if "cpu" in controllers.split(",")]
    return v1[0] if v1 else next(path for _, controllers, path in lines if controllers == "")


@pytest.fixture
def idle_share() -> Iterator[StandinShare]:
    share = StandinShare("idle", 10)
    if share.group is None:
        pytest.skip("no writable cgroup with cpu.idle here (needs root or a delegated subtree)")
    try:
        yield share
    finally:
        share.close()


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "30"], start_new_session=True)


def test_idle_share_puts_each_standin_in_a_group_of_its_own_below_an_idle_one(
    idle_share: StandinShare,
) -> None:
    assert idle_share.group is not None
    group = idle_share.group.path
    assert (group / "cpu.idle").read_text().strip() == "1"
    assert idle_share.applied.startswith("idle")
    first, second = _sleeper(), _sleeper()
    try:
        idle_share.apply(first.pid, "emulator")
        idle_share.apply(second.pid, "callers")
        assert (group / f"emulator-{first.pid}" / "cgroup.procs").read_text().split() == [
            str(first.pid)
        ]
        assert (group / f"callers-{second.pid}" / "cgroup.procs").read_text().split() == [
            str(second.pid)
        ]
        assert os.getpriority(os.PRIO_PROCESS, first.pid) == 10  # and the nice value
        idle_share.close()
        # The groups are gone and what still ran is back where it came from.
        assert not group.exists()
        assert GROUP_PREFIX not in _relative_cpu_path(first.pid)
    finally:
        for process in (first, second):
            process.kill()
            process.wait()


def test_a_handed_down_group_is_joined_not_owned(
    idle_share: StandinShare, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert idle_share.group is not None
    group = idle_share.group.path
    monkeypatch.setenv(SHARED_GROUP_ENV, str(group))
    inner = StandinShare("idle", 10)  # what `make dev` does when the benchmark started it
    assert inner.group is not None and inner.group.path == group and not inner.group.owned
    # A process of ours doing a stand-in's work joins a child group by itself (job processes).
    code = (
        "import os, sys; from agentline.cpu_share import join_handed_down_group; "
        "print(join_handed_down_group('agent-jobs')); sys.stdout.flush(); "
        "print(open('/proc/self/cgroup').read())"
    )
    joined = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert joined.startswith("True")
    assert f"{group.name}/agent-jobs" in joined
    inner.close()
    assert group.exists()  # the handed-down group belongs to the run that made it
    idle_share.close()
    assert not group.exists()  # with the child group another process made in it


def test_no_handed_down_group_means_nothing_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SHARED_GROUP_ENV, raising=False)
    assert join_handed_down_group("agent-jobs") is False


def test_nice_and_off_modes_and_a_bad_mode() -> None:
    share = StandinShare("nice", 12)
    assert share.group is None and share.applied == "nice 12"
    leader = _sleeper()
    try:
        share.apply(leader.pid, "emulator")
        assert os.getpriority(os.PRIO_PROCESS, leader.pid) == 12
        off = StandinShare("off", 12)
        other = _sleeper()
        off.apply(other.pid, "emulator")
        assert off.applied == "off" and os.getpriority(os.PRIO_PROCESS, other.pid) == 0
        other.kill()
        other.wait()
    finally:
        leader.kill()
        leader.wait()
    with pytest.raises(ValueError, match="idle, nice, off"):
        StandinShare("fast")


def test_groups_left_by_a_killed_run_are_removed(idle_share: StandinShare) -> None:
    assert idle_share.group is not None
    parent = idle_share.group.path.parent
    dead_pid = 9_999_999  # above PID_MAX_LIMIT (4194304): never a live process
    stale = parent / f"{GROUP_PREFIX}{dead_pid}-1"
    (stale / "agent-jobs").mkdir(parents=True)
    StandinShare("idle", 10).close()  # a new run looks for them
    assert not stale.exists()
    assert idle_share.group.path.exists()  # a live run's group stays
