"""The chart's alert rules: valid (`promtool check rules`), each proven by a `promtool test rules`
unit test that fires it and keeps it quiet below its threshold, each with a runbook section.

promtool comes from the Debian package `prometheus` (`apt-get install -y prometheus`); without
it these tests skip locally and fail under CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts/leadflow/files/prometheus-rules.yaml"
RULE_TESTS = Path(__file__).with_name("prometheus_rules_test.yaml")
RUNBOOKS = ROOT / "docs/runbooks.md"


def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else "")
    if not found:
        message = "promtool not found: apt-get install -y prometheus (Debian package `prometheus`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def alerts() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules() -> None:
    out = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in out.stdout


def test_every_alert_passes_its_unit_tests() -> None:
    out = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name], capture_output=True, text=True, cwd=RULE_TESTS.parent
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {str(a["alert"]) for a in alerts()} <= fired


def test_every_alert_links_a_runbook_section() -> None:
    anchors = {
        re.sub(r"[^a-z0-9-]", "", line.lstrip("#").strip().lower().replace(" ", "-"))
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for alert in alerts():
        url = str(alert["annotations"]["runbook_url"])  # type: ignore[index]
        assert url.endswith("docs/runbooks.md#" + str(alert["alert"]).lower()), url
        assert str(alert["alert"]).lower() in anchors, f"no docs/runbooks.md section for {alert['alert']}"
