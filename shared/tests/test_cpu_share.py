"""A stand-in process's lower CPU weight (agentline.cpu_share) and devrun's setting for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentline import devrun
from agentline.cpu_share import autogroup_enabled, lower_cpu_weight

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


@pytest.mark.parametrize("value", ["20", "-3", "ten"])
def test_devrun_names_a_bad_standin_nice(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        devrun.main(["--standin-nice", value])
    assert exited.value.code == 2
    assert "AGENTLINE_DEV_STANDIN_NICE" in capsys.readouterr().err
