"""Pytest plugin: a private PostgreSQL database and Redis prefix per run, and real processes.

Loaded with `-p leadflow_core.testing`. Fixtures skip when a server is missing locally but
fail when `CI` is set, so CI never passes by skipping. Each run makes its own development CA and
component certificates and points `LEADFLOW_TLS_DIR` at them, so every server and channel the
tests start (in this process or a child) speaks mutual TLS exactly as in production. Each child
service calls with its own component certificate; the test process itself plays every caller, so
it holds a certificate naming all identities (`TEST_CERTIFICATE`, minted by this per-run CA only)
unless a channel names one identity (the authorization tests do).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from leadflow_core import dev_ca, tls
from leadflow_core.access_policy import DEV_CERTIFICATES, IDENTITIES
from leadflow_core.db import normalise_url
from leadflow_core.keyring import add_key

T = TypeVar("T")

DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REPO_ROOT = Path(__file__).resolve().parents[4]


TEST_CERTIFICATE = "tests"
_TLS_TEMP: list[tempfile.TemporaryDirectory[str]] = []


def pytest_configure(config: pytest.Config) -> None:
    """One development CA per run, before any fixture starts a server or a channel."""
    if os.environ.get("LEADFLOW_TLS_CERT_FILE"):
        return
    holder = tempfile.TemporaryDirectory(prefix="leadflow-tls-")
    _TLS_TEMP.append(holder)
    os.environ.update(provision_tls(Path(holder.name)))


def provision_tls(directory: Path) -> dict[str, str]:
    """A development CA in `directory` with every component's certificate and one that may call
    as any of them (for the harness), and one keyring for secrets at rest: the environment that
    points this process and the services it starts at them (tests and `make bench`)."""
    dev_ca.ensure(directory, {**DEV_CERTIFICATES, TEST_CERTIFICATE: IDENTITIES})
    keyring_dir = directory / "keyring"
    add_key(keyring_dir, "k1")
    return {
        "LEADFLOW_TLS_DIR": str(directory),
        "LEADFLOW_TLS_IDENTITY": TEST_CERTIFICATE,
        "LEADFLOW_KEYRING_DIR": str(keyring_dir),
    }


def pytest_unconfigure(config: pytest.Config) -> None:
    while _TLS_TEMP:
        _TLS_TEMP.pop().cleanup()


@pytest.fixture(autouse=True)
def _test_process_identity() -> Iterator[None]:
    """A test that runs a `main()` in this process (the CLI's, say) names its component; the
    name must not outlive the test, or every later channel would call as that component."""
    yield
    tls.set_component(None)


@pytest.fixture(scope="session")
def tls_dir() -> Path:
    """This run's development CA and component certificates."""
    return Path(os.environ["LEADFLOW_TLS_DIR"])


def _unavailable(what: str, err: Exception) -> None:
    msg = f"{what} is not reachable ({err}); set LEADFLOW_TEST_* or start it (see README)"
    if os.environ.get("CI"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def wait_for(
    predicate: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll until `predicate` returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def create_database(admin_url: str, name: str) -> str:
    engine = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(normalise_url(admin_url)).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    engine = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = os.environ.get("LEADFLOW_TEST_DATABASE_ADMIN_URL", DEFAULT_PG_ADMIN_URL)
    try:
        engine = create_engine(normalise_url(url))
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as err:
        _unavailable("PostgreSQL", err)
    return url


@contextmanager
def migrated_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database with every service's schema, dropped afterwards."""
    from leadflow_core.migrations import SERVICES_WITH_SCHEMA, upgrade

    name = f"lftest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = create_database(admin_url, name)
    try:
        for service in SERVICES_WITH_SCHEMA:
            upgrade(service, url)
        yield url
    finally:
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    with migrated_database(pg_admin_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url(pg_admin_url: str) -> Iterator[str]:
    """A database of this module's own: for a module whose mesh's relay and workers act on every
    row of their database (stale calls to reconcile, due jobs), which the session database fills
    with earlier modules' leftovers."""
    with migrated_database(pg_admin_url) as url:
        yield url


@pytest.fixture
def private_database_url(pg_admin_url: str) -> Iterator[str]:
    """A database of this test's own: for tests that count everything a database's work costs,
    which earlier tests' leftover work (outbox rows, calls) in the session database would skew."""
    with migrated_database(pg_admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("LEADFLOW_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    try:
        redis.Redis.from_url(url).ping()
    except Exception as err:
        _unavailable("Redis", err)
    return url


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other run uses; its keys are deleted afterwards."""
    prefix = f"lftest:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)


@dataclass
class ServiceProcess:
    """One of our services, started as a real process that binds port 0."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    log_path: Path = field(default_factory=Path)

    def start(self, timeout: float = 60.0, wait_port: bool = True) -> ServiceProcess:
        port_file = self.workdir / f"{self.name}.port"
        port_file.unlink(missing_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        env = {**os.environ, **self.env, "LEADFLOW_PORT_FILE": str(port_file)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, env=env, stdout=log, stderr=log, cwd=REPO_ROOT)
        log.close()
        if wait_port:

            def ready() -> int | None:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
                if port_file.exists():
                    return int(port_file.read_text())
                return None

            try:
                self.port = wait_for(ready, timeout, what=f"{self.name} to listen")
            except BaseException:
                # Never leave an orphan behind a failed start.
                self.kill()
                raise
        return self

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="leadflow-test-") as d:
        yield Path(d)


def service_env(
    database_url: str, redis_url: str, redis_prefix: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {
        "LEADFLOW_DATABASE_URL": database_url,
        "LEADFLOW_REDIS_URL": redis_url,
        "LEADFLOW_REDIS_PREFIX": redis_prefix,
        "LEADFLOW_LOG_LEVEL": "INFO",
        # Metrics/health ports: never a fixed port in tests.
        "LEADFLOW_COMPLIANCE_METRICS_ADDR": "127.0.0.1:0",
        "LEADFLOW_DISPATCHER_METRICS_ADDR": "127.0.0.1:0",
        "LEADFLOW_GATEWAY_METRICS_ADDR": "127.0.0.1:0",
        "LEADFLOW_WORKER_METRICS_ADDR": "127.0.0.1:0",
        "LEADFLOW_OPERATOR_METRICS_ADDR": "127.0.0.1:0",
    }
    env.update(extra or {})
    return env
