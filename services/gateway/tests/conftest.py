"""Gateway test fixtures: the real services behind the gateway (see `harness`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from services.gateway.tests.harness import Harness


@pytest.fixture(scope="session")
def harness(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    """Compliance, dispatcher and gateway as real processes; tenants `acme`, `refused`, `api-only`."""
    from services.gateway.tests.harness import running

    with running(database_url, redis_url, redis_prefix, tmp_path_factory.mktemp("gateway")) as h:
        yield h
