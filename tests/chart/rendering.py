"""Render the chart with the real Helm engine (helm-python-sdk) and split it into objects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "leadflow"
CI_VALUES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
CRD_FILE = CHART_DIR / "crds" / "tenants.leadflow.dev.yaml"
RELEASE = "lf"
NAMESPACE = "leadflow"
KUBE_VERSIONS = ("1.29.0", "1.31.0", "1.33.0", "1.36.0", "1.37.0")
EXAMPLE_VALUES = sorted((REPO_ROOT / "examples").glob("values-*.yaml"))

Obj = dict[str, Any]


def load_values(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text()) or {}
    assert isinstance(values, dict)
    return values


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template name -> rendered text, as `helm template` would produce."""
    with helm.Chart.load(CHART_DIR) as chart:
        rendered: dict[str, str] = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    return rendered


def objects(values: dict[str, Any] | None = None) -> list[Obj]:
    """Every Kubernetes object the chart renders (NOTES.txt excluded)."""
    out: list[Obj] = []
    for name, text in render(values).items():
        if name.endswith("NOTES.txt"):
            continue
        out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def crd() -> Obj:
    doc = yaml.safe_load(CRD_FILE.read_text())
    assert isinstance(doc, dict)
    return doc


def of_kind(objs: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def component(obj: Obj) -> str:
    labels: dict[str, str] = obj["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/component", "")


def pod_specs(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(object, pod spec) for every object that runs pods."""
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            yield o, o["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            yield o, o["spec"]


def name(component_name: str) -> str:
    return f"{RELEASE}-leadflow-{component_name}"
