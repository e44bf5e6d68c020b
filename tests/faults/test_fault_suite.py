"""The fault suite's CI subset: a few scenarios of `make faults`, small load, on the suite's own
PostgreSQL and Redis. Asserts what holds on main; the full suite and its open items are in
`make faults` and the closing notes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from faults.backends import PG_BIN
from faults.run import Report, Stack, run_scenario
from faults.scenarios import SCENARIOS
from faults.stack import private_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if not (PG_BIN / "initdb").exists() or shutil.which("redis-server") is None:
        message = f"the fault suite needs PostgreSQL's initdb ({PG_BIN}) and redis-server"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with private_stack() as s:
        yield s


def check(report: Report) -> None:
    assert report.leads_in > 0
    assert report.lost == 0, report
    assert report.dialed == report.leads_in, report
    assert report.leads_called_twice == 0, report
    assert report.leads_written_twice == 0, report
    assert report.spend_usd == report.settled_prices_usd, report


# A subset within the CI budget (about 1.5 min each); `make faults` runs them all. Spend equals
# Twilio's prices only once each call's price was looked up after its end (calls last 75 s, so
# a price is twice the 1-minute estimate): a Redis restart that strands those lookups, or a
# provider outage that sends leads to review, fails here.
@pytest.mark.parametrize(
    "name", ["sigkill_jobs_worker", "sigkill_gateway", "lost_callbacks", "redis_restart", "provider_5xx"]
)
def test_scenario_loses_nothing_and_calls_once(stack: Stack, name: str) -> None:
    check(run_scenario(stack, SCENARIOS[name], rate=1.0, seconds=10.0, settle_timeout=120.0))
