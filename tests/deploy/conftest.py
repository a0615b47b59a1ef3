"""Fixtures of the deployment tests: rendered value profiles and the tools (promtool, the
Prometheus server) that the tests install from Debian's packages when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_support import PROFILES, Manifest, manifests


@pytest.fixture(params=sorted(PROFILES), scope="module")
def profile(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    name: str = request.param
    return name, manifests(PROFILES[name])


def _apt_install(package: str) -> str | None:
    """Install a Debian package when its tool is missing; None on success, else the reason."""
    if os.geteuid() != 0:
        return f"{package} is not installed and installing it needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = subprocess.run(
        ["apt-get", "update", "-qq"], capture_output=True, text=True, env=env, timeout=300
    )
    if update.returncode != 0:
        return f"apt-get update failed: {update.stderr.strip()[-300:]}"
    install = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if install.returncode != 0:
        return f"apt-get install {package} failed: {install.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian's prometheus package ships it); installed when missing."""
    found = shutil.which("promtool")
    if found is None:
        reason = _apt_install("prometheus")
        found = shutil.which("promtool")
        if found is None:
            pytest.skip(f"promtool unavailable: {reason or 'not on PATH after install'}")
    return found


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        reason = _apt_install("prometheus")
        found = shutil.which("prometheus")
        if found is None:
            pytest.skip(f"prometheus unavailable: {reason or 'not on PATH after install'}")
    return found
