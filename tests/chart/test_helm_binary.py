"""The chart through the official `helm` binary: strict lint and template for a given Kubernetes
version and API set (what helm-python-sdk cannot vary), agreeing with the SDK's render."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.k8s_tools import ensure_tools
from tests.chart.rendering import CHART_DIR, CI_VALUES, NAMESPACE, RELEASE, load_values, objects

KUBE = "1.31.0"
API_VERSIONS = ("keda.sh/v1alpha1", "monitoring.coreos.com/v1")


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_tools() / "helm"


def run(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict(helm: Path, values_file: Path) -> None:
    result = run(helm, "lint", str(CHART_DIR), "--strict", "--kube-version", KUBE, "-f", str(values_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_helm_template_matches_the_sdk_render(helm: Path, values_file: Path) -> None:
    args = ["template", RELEASE, str(CHART_DIR), "-n", NAMESPACE, "--include-crds", "--kube-version", KUBE]
    for api in API_VERSIONS:
        args += ["--api-versions", api]
    result = run(helm, *args, "-f", str(values_file))
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    crds = [d for d in rendered if d["kind"] == "CustomResourceDefinition"]
    assert [c["metadata"]["name"] for c in crds] == ["tenants.leadflow.dev"]
    from_binary = {(d["kind"], d["metadata"]["name"]) for d in rendered if d not in crds}
    from_sdk = {(d["kind"], d["metadata"]["name"]) for d in objects(load_values(values_file))}
    assert from_binary == from_sdk


def test_chart_refuses_too_old_kubernetes(helm: Path) -> None:
    result = run(helm, "template", RELEASE, str(CHART_DIR), "--kube-version", "1.26.0")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr or "incompatible" in result.stderr
