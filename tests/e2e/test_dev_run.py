"""`make run`'s supervisor: the whole mesh from one command, a first lead, and Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from leadflow_core.testing import REPO_ROOT, wait_for
from leadflow_enrichment.settings import WORKER_PROCESSES
from tests.e2e.scenario import clock_env, lead_body

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dev_run_starts_everything_takes_a_lead_and_stops_on_ctrl_c(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    gw = _free_port()
    env = {
        **os.environ,
        **clock_env(),
        "LEADFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'leadflow.db'}",
        "LEADFLOW_REDIS_URL": redis_url,
        "LEADFLOW_REDIS_PREFIX": redis_prefix + "devrun:",
        "LEADFLOW_GATEWAY_ADDR": f"127.0.0.1:{gw}",
        "LEADFLOW_COMPLIANCE_ADDR": f"127.0.0.1:{_free_port()}",
        "LEADFLOW_DISPATCHER_ADDR": f"127.0.0.1:{_free_port()}",
        "LEADFLOW_DISPATCHER_METRICS_ADDR": "127.0.0.1:0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadflow_cli", "dev-run", "--var-dir", str(tmp_path / "var")],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            output.append(raw.decode(errors="replace"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        key_line = wait_for(
            lambda: (
                next((line for line in output if "API key for this run" in line), None)
                or (proc.poll() is not None and pytest.fail("dev-run exited:\n" + "".join(output)))
            ),
            timeout=120,
            what="the dev-run banner",
        )
        match = re.search(r"API key for this run: (\S+)", str(key_line))
        assert match, key_line
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3 + len(WORKER_PROCESSES)
        # The workers run as the processes their package lays out (urgent dials on their own).
        worker_groups = sorted(
            json.loads(c.environ()["LEADFLOW_WORKER_GROUPS"])
            for c in children
            if "leadflow_enrichment" in c.cmdline()
        )
        assert worker_groups == sorted(list(p.groups) for p in WORKER_PROCESSES.values())
        resp = httpx.post(
            f"http://127.0.0.1:{gw}/v1/leads",
            json=lead_body(0, tag="devrun"),
            headers={"Authorization": f"Bearer {match.group(1)}"},
            timeout=30,
        )
        assert resp.status_code == 202, resp.text
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        reader.join(5)
    assert code == 0, "".join(output[-50:])
    assert "stopping the mesh" in "".join(output)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
