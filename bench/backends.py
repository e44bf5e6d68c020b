"""A fresh, migrated PostgreSQL database and Redis prefix for one benchmark run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from leadflow_core.migrations import SERVICES_WITH_SCHEMA, upgrade
from leadflow_core.testing import DEFAULT_PG_ADMIN_URL, DEFAULT_REDIS_URL, create_database, drop_database


def admin_url() -> str:
    return os.environ.get("LEADFLOW_TEST_DATABASE_ADMIN_URL", DEFAULT_PG_ADMIN_URL)


@contextmanager
def bench_backends() -> Iterator[tuple[str, str, str]]:
    admin = admin_url()
    redis_url = os.environ.get("LEADFLOW_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    name = f"lfbench_{uuid.uuid4().hex[:8]}"
    prefix = f"lfbench:{uuid.uuid4().hex[:8]}:"
    url = create_database(admin, name)
    try:
        for service in SERVICES_WITH_SCHEMA:
            upgrade(service, url)
        yield url, redis_url, prefix
    finally:
        drop_database(admin, name)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
