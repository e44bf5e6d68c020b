"""The faults, one per scenario. Each `inject` returns once the fault is over (the process back,
the database up again, the fake answering normally)."""

from __future__ import annotations

import time

from faults.fakes import CountingHubSpot, CountingTwilio
from faults.mesh import SERVICES, restart
from faults.run import Fault, Stack

# The provider client gives up after 10 s (ProviderSettings.provider_timeout_seconds): a fake
# that answers later has already acted on a request the client counts as failed.
PAST_CLIENT_TIMEOUT = 13.0


def _nothing(stack: Stack, twilio: CountingTwilio, hubspot: CountingHubSpot) -> None:
    time.sleep(1)


def _kill(name: str) -> Fault:
    def inject(stack: Stack, twilio: CountingTwilio, hubspot: CountingHubSpot) -> None:
        stack.mesh.processes[name].kill()
        time.sleep(1)
        restart(stack.mesh, name)

    return Fault(f"sigkill_{name.replace('-', '_')}", inject)


def _redis_restart(stack: Stack, twilio: CountingTwilio, hubspot: CountingHubSpot) -> None:
    stack.redis.kill()
    time.sleep(1)
    stack.redis.start()  # the append-only file brings back what was fsynced


def _redis_flushall(stack: Stack, twilio: CountingTwilio, hubspot: CountingHubSpot) -> None:
    stack.redis.flushall()


def _postgres_down(stack: Stack, twilio: CountingTwilio, hubspot: CountingHubSpot) -> None:
    stack.pg.stop()
    time.sleep(20)
    stack.pg.start()


# An outage lasts a while, not a number of requests: every request in the window fails (a count
# would be spent one circuit-breaker probe at a time, long after the outage).
def _provider_5xx(stack: Stack, twilio: CountingTwilio, hubspot: CountingHubSpot) -> None:
    twilio.fail(times=100_000, status=500, path_contains="/Calls.json")
    time.sleep(8)
    twilio.clear_faults()


def _provider_timeout_after_create(stack: Stack, twilio: CountingTwilio, hubspot: CountingHubSpot) -> None:
    # Twilio creates the call, but its answer comes after the client has given up.
    twilio.answer_late(times=3, seconds=PAST_CLIENT_TIMEOUT, path_contains="/Calls.json")
    time.sleep(PAST_CLIENT_TIMEOUT)


def _lost_callbacks(stack: Stack, twilio: CountingTwilio, hubspot: CountingHubSpot) -> None:
    twilio.drop_callbacks = True
    time.sleep(8)
    twilio.drop_callbacks = False


def _crm_429(stack: Stack, twilio: CountingTwilio, hubspot: CountingHubSpot) -> None:
    hubspot.fail(times=100_000, status=429, headers={"Retry-After": "1"})
    time.sleep(8)
    hubspot.clear_faults()


def _crm_timeout_after_write(stack: Stack, twilio: CountingTwilio, hubspot: CountingHubSpot) -> None:
    # HubSpot applies the upsert, but answers after the client has given up.
    hubspot.answer_late(times=3, seconds=PAST_CLIENT_TIMEOUT, path_contains="/batch/upsert")
    time.sleep(PAST_CLIENT_TIMEOUT)


SCENARIOS: dict[str, Fault] = {
    f.name: f
    for f in [
        Fault("baseline", _nothing),
        *(_kill(name) for name in SERVICES),
        Fault("redis_restart", _redis_restart),
        Fault("redis_flushall", _redis_flushall),
        Fault("postgres_down_20s", _postgres_down),
        Fault("provider_5xx", _provider_5xx),
        Fault("provider_timeout_after_create", _provider_timeout_after_create, needs="i14-dial"),
        Fault("lost_callbacks", _lost_callbacks),
        Fault("crm_429", _crm_429),
        Fault("crm_timeout_after_write", _crm_timeout_after_write, needs="i14-crm"),
    ]
}
