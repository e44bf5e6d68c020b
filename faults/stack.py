"""The suite's own world: private PostgreSQL and Redis, migrated, and the mesh on them."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from faults.backends import PrivatePostgres, PrivateRedis
from faults.mesh import start_mesh, stop_mesh
from faults.run import Stack
from leadflow_core import dev_ca
from leadflow_core.access_policy import DEV_CERTIFICATES, IDENTITIES
from leadflow_core.keyring import add_key
from leadflow_core.migrations import SERVICES_WITH_SCHEMA, upgrade
from leadflow_core.testing import TEST_CERTIFICATE
from tests.e2e.scenario import clock_env

# Recovery paths run at their production settings, except how long a call may go without its
# final callback before the product asks Twilio (production: 15 min; here the run would end first),
# and how soon an ended call's price is looked up (production: 60 s, then every 60 s).
ENV = {
    "LEADFLOW_CALL_STATUS_TIMEOUT_SECONDS": "20",
    "LEADFLOW_CALL_STATUS_POLL_SECONDS": "5",
    "LEADFLOW_CALL_PRICE_DELAY_SECONDS": "5",
    "LEADFLOW_CALL_PRICE_POLL_SECONDS": "5",
}


def _tls(root: Path) -> None:
    """Every hop is mutual TLS: a development CA for this run (pytest makes its own), the suite
    calling as the tests' identity, and one keyring for secrets at rest."""
    if os.environ.get("LEADFLOW_TLS_DIR"):
        return
    dev_ca.ensure(root / "tls", {**DEV_CERTIFICATES, TEST_CERTIFICATE: IDENTITIES})
    add_key(root / "tls" / "keyring", "k1")
    os.environ["LEADFLOW_TLS_DIR"] = str(root / "tls")
    os.environ["LEADFLOW_TLS_IDENTITY"] = TEST_CERTIFICATE
    os.environ["LEADFLOW_KEYRING_DIR"] = str(root / "tls" / "keyring")


@contextlib.contextmanager
def private_stack(extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="leadflow-faults-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # PostgreSQL runs as its own user when we are root: it must get in
        _tls(root)
        pg = PrivatePostgres(root / "pg").init()
        redis = PrivateRedis(root / "redis")
        try:
            redis.start()
            url = pg.create_database("leadflow")
            for service in SERVICES_WITH_SCHEMA:
                upgrade(service, url)
            (root / "mesh").mkdir()
            mesh = start_mesh(url, redis.url, root / "mesh", {**clock_env(), **ENV, **(extra_env or {})})
            try:
                yield Stack(pg, redis, mesh, url, root / "mesh")
            finally:
                stop_mesh(mesh)
        finally:
            redis.destroy()
            pg.destroy()
