"""A small process supervisor for the local mesh: start in order, wait until ready, stop together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    port_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    _pump: threading.Thread | None = field(default=None, repr=False)


def _pump_output(name: str, stream: IO[bytes], out: IO[str]) -> None:
    # One line at a time with the process name in front, so interleaved logs stay readable.
    for raw in iter(stream.readline, b""):
        out.write(f"{name:<11}| {raw.decode(errors='replace').rstrip()}\n")
        out.flush()


class Supervisor:
    def __init__(self, base_env: Mapping[str, str]) -> None:
        self.base_env = dict(base_env)
        self.children: list[Child] = []

    def start(self, child: Child, timeout: float = 60.0) -> Child:
        if child.port_file is not None:
            child.port_file.unlink(missing_ok=True)
            child.env["LEADFLOW_PORT_FILE"] = str(child.port_file)
        env = {**os.environ, **self.base_env, **child.env}
        child.proc = subprocess.Popen(
            child.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        assert child.proc.stdout is not None
        child._pump = threading.Thread(
            target=_pump_output, args=(child.name, child.proc.stdout, sys.stdout), daemon=True
        )
        child._pump.start()
        self.children.append(child)
        if child.port_file is not None:
            deadline = time.monotonic() + timeout
            while not child.port_file.exists():
                if child.proc.poll() is not None:
                    raise RuntimeError(f"{child.name} exited with code {child.proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{child.name} did not become ready in {timeout:.0f}s")
                time.sleep(0.05)
            child.port = int(child.port_file.read_text())
        return child

    def first_exited(self) -> Child | None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                return child
        return None

    def stop_all(self, grace: float = 15.0) -> None:
        # Reverse order: the gateway stops taking leads before the services behind it go.
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
