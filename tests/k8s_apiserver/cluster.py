"""A real Kubernetes API server for tests: etcd + the standalone apiextensions-apiserver + our front.

The binaries come from `scripts/k8s-apiserver.sh build` (Debian sid's packages, built once per
version into a cache outside the repo). Everything listens on loopback on free ports; `stop()`
ends exactly the processes started here.

    python -m tests.k8s_apiserver.cluster     # start one, print its kubeconfig, wait for Ctrl-C
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "k8s-apiserver.sh"
# Admission plugins that need core APIs the standalone server does not have.
DISABLED_ADMISSION = (
    "NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,"
    "ValidatingAdmissionPolicy,ValidatingAdmissionWebhook"
)
FAULTS = {
    10: "the Debian archive (download/unpack)",
    11: "the archive's sources (they did not build together)",
    12: "our build script",
}


class TierUnavailable(RuntimeError):
    """The binaries could not be had; the message says whose fault it is."""


def build_binaries() -> Path:
    """The cached version root holding bin/{apiextensions-apiserver,etcd,kubectl}."""
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), "build"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        fault = FAULTS.get(proc.returncode, "unknown (see the output)")
        raise TierUnavailable(f"k8s-apiserver.sh failed; at fault: {fault}\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a client certificate in group system:masters."""
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "client.key", "client.csr", "client.pem")
    )
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
             "-days", "2", "-subj", "/CN=leadflow-test-ca")  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", "/O=system:masters/CN=leadflow-test-admin")  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", "2")  # fmt: skip
    return {"ca": ca, "cert": cert, "key": key}


def _kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {}}],
        "contexts": [
            {"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "default"}}
        ],
        "current-context": "test",
    }
    path.write_text(json.dumps(config))
    return path


@dataclass
class ApiServer:
    root: Path
    workdir: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    front_url: str = ""
    kubeconfig: Path = Path()
    version: str = ""

    @property
    def kubectl_path(self) -> Path:
        return self.root / "bin" / "kubectl"

    def _spawn(self, label: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.workdir / f"{label}.log", "wb")  # noqa: SIM115 (owned by the process)
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append((label, proc))

    def log(self, label: str, tail: int = 4000) -> str:
        path = self.workdir / f"{label}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def _wait(self, what: str, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for label, proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{label} exited ({proc.returncode}) while waiting for {what}:\n{self.log(label)}"
                    )
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(
            f"{what} not ready after {timeout}s:\n" + "\n".join(self.log(p[0]) for p in self.procs)
        )

    def start(self, timeout: float = 90.0) -> ApiServer:
        bin_dir = self.root / "bin"
        self.version = "v1." + (self.root / "VERSION").read_text().strip().split(".", 1)[1].split("-")[0]
        certs = make_certs(self.workdir)
        client_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        self._spawn(
            "etcd",
            [
                str(bin_dir / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--log-level=warn",
                "--unsafe-no-fsync",
            ],
        )
        ports_file = self.workdir / "ports.json"
        self._spawn(
            "proxy",
            [
                sys.executable,
                "-m",
                "tests.k8s_apiserver.front_proxy",
                "--upstream",
                f"https://127.0.0.1:{api_port}",
                "--cert",
                str(certs["cert"]),
                "--key",
                str(certs["key"]),
                "--version",
                self.version,
                "--ports-file",
                str(ports_file),
            ],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        self._wait("the front proxy", ports_file.exists, 30)
        ports = json.loads(ports_file.read_text())
        core = _kubeconfig(self.workdir / "core.kubeconfig", f"http://127.0.0.1:{ports['core']}")
        self._wait("etcd", lambda: _get(f"{etcd_url}/health"), 30)
        self._spawn(
            "apiserver",
            [
                str(bin_dir / "apiextensions-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={self.workdir / 'serving'}",
                f"--client-ca-file={certs['ca']}",
                f"--kubeconfig={core}",
                f"--authentication-kubeconfig={core}",
                f"--authorization-kubeconfig={core}",
                "--authentication-skip-lookup",
                "--enable-priority-and-fairness=false",
                f"--disable-admission-plugins={DISABLED_ADMISSION}",
            ],
        )
        self.front_url = f"http://127.0.0.1:{ports['front']}"
        self.kubeconfig = _kubeconfig(self.workdir / "kubeconfig", self.front_url)
        self._wait("the API server", lambda: _get(f"{self.front_url}/readyz") == "ok", timeout)
        return self

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        namespace: str | None = None,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            str(self.kubectl_path),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kcache'}",
        ]
        if namespace:
            cmd.append(f"--namespace={namespace}")
        proc = subprocess.run(
            [*cmd, *args], input=input, capture_output=True, text=True, check=False, timeout=60
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.front_url}{path}", timeout=15) as resp:  # noqa: S310 (http, loopback)
            return json.loads(resp.read())


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (http, loopback)
            text: str = resp.read().decode()
            return text
    except OSError:
        return ""


def main() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with tempfile.TemporaryDirectory(prefix="leadflow-k8s-") as tmp:
        server = ApiServer(build_binaries(), Path(tmp))
        try:
            server.start()
            print(f"KUBECONFIG={server.kubeconfig}  ({server.version}, front {server.front_url})", flush=True)
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            server.stop()


if __name__ == "__main__":
    main()
