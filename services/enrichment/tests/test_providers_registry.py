"""The registry: the tenant's provider, else the deployment default; caching; plan gating."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool
from structlog.testing import capture_logs

from leadflow.v1.tenant_pb2 import SourceConfig
from leadflow.v1.tenants_pb2 import GetProviderConfigResponse
from leadflow_core.logs import get_logger
from leadflow_core.migrations import upgrade
from leadflow_core.testing import wait_for
from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.providers.base import CallRequest, LeadView
from leadflow_enrichment.providers.hubspot import HubSpotCrm
from leadflow_enrichment.providers.local_crm import LocalCrm
from leadflow_enrichment.providers.local_scorer import RuleScorer
from leadflow_enrichment.providers.openai_scorer import OpenAiScorer
from leadflow_enrichment.providers.registry import ProviderRegistry
from leadflow_enrichment.providers.salesforce import SalesforceCrm
from leadflow_enrichment.providers.settings import ProviderSettings
from leadflow_enrichment.providers.simulator import DialSimulator
from leadflow_enrichment.providers.twilio import TwilioDialer
from tests.fakes.http_server import RecordingServer
from tests.fakes.openai import OpenAiFake


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ProviderRegistry]:
    url = f"sqlite:///{tmp_path / 'enrichment.db'}"
    upgrade("enrichment", url)
    reg = ProviderRegistry(ProviderSettings(database_url=url, simulator_step_seconds=0.01))
    yield reg
    reg.close()


def config(
    provider: str = "",
    secrets: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
    features: tuple[str, ...] = (),
) -> GetProviderConfigResponse:
    return GetProviderConfigResponse(
        provider=provider,
        config=SourceConfig(secrets=secrets or {}, options=options or {}),
        tenant_active=True,
        plan_features=list(features),
    )


def test_local_defaults_without_config(registry: ProviderRegistry) -> None:
    assert isinstance(registry.scorer("acme"), RuleScorer)
    crm = registry.crm("acme", config())
    assert isinstance(crm, LocalCrm)
    assert crm.upsert_lead(LeadView(tenant="acme", lead_id="l1", source="form"), None).created
    dialer = registry.dialer("acme")
    assert isinstance(dialer, DialSimulator)
    handle = dialer.place_call(CallRequest("a1", "acme", "l1", "+13055550123", "", ""))
    assert dialer.fetch_status(handle.provider_call_id).provider_call_id == handle.provider_call_id
    # One client per tenant and config, reused across jobs.
    assert registry.dialer("acme") is dialer
    assert registry.dialer("globex") is not dialer


def test_tenant_providers_are_built_from_their_config(registry: ProviderRegistry) -> None:
    sf = registry.crm(
        "acme",
        config("salesforce", {"access_token": "t"}, {"instance_url": "https://acme.my.salesforce.com"}),
    )
    assert isinstance(sf, SalesforceCrm)
    hs = registry.crm("acme", config("HubSpot", {"access_token": "t"}))
    assert isinstance(hs, HubSpotCrm)
    tw = registry.dialer(
        "acme", config("twilio", {"auth_token": "t"}, {"account_sid": "AC1", "from_number": "+15005550006"})
    )
    assert isinstance(tw, TwilioDialer)
    # "local" names the built-in default of any kind.
    assert isinstance(registry.dialer("acme", config("local")), DialSimulator)
    assert isinstance(registry.scorer("acme", config("local")), RuleScorer)


def test_changed_credentials_build_a_new_client(registry: ProviderRegistry) -> None:
    first = registry.crm("acme", config("hubspot", {"access_token": "old"}))
    assert registry.crm("acme", config("hubspot", {"access_token": "old"})) is first
    assert registry.crm("acme", config("hubspot", {"access_token": "new"})) is not first


def test_missing_credentials_and_unknown_providers_are_external(registry: ProviderRegistry) -> None:
    with pytest.raises(ProviderError) as err:
        registry.crm("acme", config("salesforce", {}, {"instance_url": "https://x.my.salesforce.com"}))
    assert err.value.error_class is ErrorClass.EXTERNAL
    assert "access_token" in str(err.value)
    with pytest.raises(ProviderError) as err:
        registry.dialer("acme", config("vonage"))
    assert err.value.error_class is ErrorClass.EXTERNAL


def test_ai_scoring_needs_the_plan_feature(registry: ProviderRegistry) -> None:
    with OpenAiFake(api_key="sk-1") as llm:
        free = registry.scorer("acme", config("openai", {"api_key": "sk-1"}, {"base_url": llm.url}))
        assert isinstance(free, RuleScorer)
        paid = registry.scorer(
            "acme", config("openai", {"api_key": "sk-1"}, {"base_url": llm.url}, ("ai_enrichment",))
        )
        assert isinstance(paid, OpenAiScorer)
        assert paid.score(LeadView(tenant="acme", lead_id="l", source="form")).fit_score == 77


def test_deployment_default_applies_when_the_tenant_names_none(tmp_path: Path) -> None:
    reg = ProviderRegistry(
        ProviderSettings(database_url=f"sqlite:///{tmp_path / 'x.db'}", crm_provider="hubspot")
    )
    try:
        assert isinstance(reg.crm("acme", config("", {"access_token": "t"})), HubSpotCrm)
        assert isinstance(reg.crm("acme", config("local")), LocalCrm)
    finally:
        reg.close()


def test_deployment_account_serves_only_tenants_on_the_default(tmp_path: Path) -> None:
    settings = ProviderSettings(
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        crm_provider="hubspot",
        hubspot_access_token="deployment-token",
        hubspot_base_url="https://api.hubapi.com",
    )
    reg = ProviderRegistry(settings)
    try:
        # On the default: the deployment's token, and a tenant's URL option is ignored.
        default = reg.crm("acme", config("", {}, {"base_url": "https://evil.example.com"}))
        assert isinstance(default, HubSpotCrm)
        assert default.base_url == "https://api.hubapi.com"
        # Naming the provider means bringing your own credentials.
        with pytest.raises(ProviderError) as err:
            reg.crm("acme", config("hubspot", {}, {"base_url": "https://evil.example.com"}))
        assert err.value.error_class is ErrorClass.EXTERNAL
    finally:
        reg.close()


def test_bad_simulator_outcomes_are_a_configuration_error(registry: ProviderRegistry) -> None:
    with pytest.raises(ProviderError) as err:
        registry.dialer("acme", config("simulator", options={"outcomes": "answered"}))
    assert err.value.error_class is ErrorClass.EXTERNAL


def test_simulator_outcome_sequence_per_lead(registry: ProviderRegistry) -> None:
    dialer = registry.dialer(
        "acme", config("simulator", options={"outcomes": "seq:busy,no-answer,completed"})
    )

    def final_status(attempt: str, lead: str) -> str:
        sid = dialer.place_call(CallRequest(attempt, "acme", lead, "+13055550123", "", "")).provider_call_id

        # No callback URL: the call settles when it is due, as reconciliation would find it.
        def ended() -> str | None:
            status = dialer.fetch_status(sid).status
            return status if status in ("busy", "no-answer", "completed") else None

        return wait_for(ended, timeout=10, what="the simulated call to end")

    assert [final_status(a, "lead-seq") for a in ("a1", "a2", "a3", "a4")] == [
        "busy",
        "no-answer",
        "completed",
        "completed",
    ]
    # The same attempt again is a new call (no dedupe, as at Twilio): the lead's fifth.
    assert final_status("a1", "lead-seq") == "completed"
    assert final_status("b1", "other-lead") == "busy"


def test_warm_up_opens_the_default_providers_pool_before_any_job(registry: ProviderRegistry) -> None:
    registry.warm_up()
    # The first dial of a fresh process finds a connection waiting, not a pool to open.
    pool = registry.engine.pool
    assert isinstance(pool, QueuePool)
    assert pool.checkedin() == 1
    registry.dialer("acme").place_call(CallRequest("a1", "acme", "l1", "+13055550123", "", ""))
    assert pool.checkedin() == 1


def test_warm_up_of_remote_defaults_touches_no_database(tmp_path: Path) -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/none"
    remote = ProviderRegistry(
        ProviderSettings(database_url=unreachable, dialer_provider="twilio", crm_provider="hubspot")
    )
    remote.warm_up()  # nothing to open: no local provider is the default
    local = ProviderRegistry(ProviderSettings(database_url=unreachable))
    with pytest.raises(OperationalError):
        local.warm_up()  # the worker logs this and starts; its jobs retry
    remote.close()
    local.close()


class _StuckRegistry(ProviderRegistry):
    def __init__(self, release: threading.Event, fail: bool = False) -> None:
        super().__init__(ProviderSettings())
        self.release, self.fail = release, fail

    def warm_up(self) -> None:
        if self.fail:
            raise OperationalError("connect", {}, Exception("refused"))
        self.release.wait(30)


def test_a_worker_starts_although_its_warm_up_hangs_or_fails() -> None:
    from leadflow_enrichment.__main__ import _warm_up

    release = threading.Event()
    with capture_logs() as logs:
        started = time.monotonic()
        _warm_up(_StuckRegistry(release), get_logger("test"), wait_seconds=0.3)
        waited = time.monotonic() - started
        release.set()
        _warm_up(_StuckRegistry(release, fail=True), get_logger("test"), wait_seconds=5)
    assert waited < 10  # bounded by its wait, not by the stuck database (30 s)
    assert [e["event"] for e in logs] == ["provider_warm_up_slow", "provider_warm_up_failed"]


def test_the_simulator_posts_as_many_calls_callbacks_at_once_as_it_has_lanes(tmp_path: Path) -> None:
    """`simulator_callback_lanes` is how many calls' callbacks are in flight together: with all
    answers stalled, one callback per lane still arrives at once (one lane would take 4 x 3 s)."""
    url = f"sqlite:///{tmp_path / 'enrichment.db'}"
    upgrade("enrichment", url)
    lanes = 4
    reg = ProviderRegistry(ProviderSettings(database_url=url, simulator_callback_lanes=lanes))
    # One call id per lane (a call's lane is its id's CRC-32 modulo the lanes).
    sids: dict[int, str] = {}
    n = 0
    while len(sids) < lanes:
        sids.setdefault(zlib.crc32(f"CA{n}".encode()) % lanes, f"CA{n}")
        n += 1
    try:
        with RecordingServer() as receiver:
            receiver.stall(times=lanes, seconds=3.0, after_effect=True)
            for sid in sids.values():
                reg.callback_sender.schedule(
                    0, receiver.url + "/cb", {"CallSid": sid, "CallStatus": "ringing"}, "token"
                )
            wait_for(lambda: len(receiver.requests) == lanes, timeout=2.0, what="a callback per lane at once")
    finally:
        reg.close()
