"""The local CRM and the dial simulator on real PostgreSQL and on SQLite."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from leadflow_core.db import make_engine
from leadflow_core.migrations import upgrade
from leadflow_core.testing import wait_for
from leadflow_core.timestamps import utcnow
from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.providers.base import CallRequest, Enrichment, LeadView
from leadflow_enrichment.providers.local_crm import LocalCrm
from leadflow_enrichment.providers.local_crm_models import LocalCrmContact, SimulatedCall
from leadflow_enrichment.providers.simulator import (
    DialSimulator,
    SimulatorConfig,
    parse_outcomes,
    pick_outcome,
)
from leadflow_enrichment.providers.status_callbacks import CallbackSender
from tests.fakes.http_server import RecordingServer

TOKEN = "sim-token"


def _independent_twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    # Written again here from Twilio's docs, so the test does not trust the code it checks.
    import base64
    import hashlib
    import hmac

    payload = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def test_independent_signature_agrees_with_twilios_example() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    signature = _independent_twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params)
    assert signature == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql":
        url = request.getfixturevalue("database_url")  # migrated by the fixture
    else:
        url = f"sqlite:///{tmp_path / 'enrichment.db'}"
        upgrade("enrichment", url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def sender() -> Iterator[CallbackSender]:
    s = CallbackSender(timeout=5, attempts=3, retry_base_seconds=0.05)
    yield s
    s.close()


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


def unique(prefix: str) -> str:
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- local CRM ---------------------------------------------------------------------------------


def test_local_crm_upsert_is_idempotent_and_scoped_by_tenant(engine: Engine) -> None:
    crm = LocalCrm(engine)
    tenant, other = unique("acme"), unique("globex")
    lead = LeadView(
        tenant=tenant, lead_id=unique("lead"), source="form", email="Ada@Example.com", first_name="Ada"
    )
    first = crm.upsert_lead(lead, Enrichment(intent="high", fit_score=80, reasons=("r",)))
    again = crm.upsert_lead(lead, None)
    assert first.created
    assert not again.created
    assert again.external_id == first.external_id

    # A new lead of the same person (same email) joins the contact and adds what it knows.
    repeat = LeadView(
        tenant=tenant,
        lead_id=unique("lead"),
        source="api",
        email="ada@example.com",
        phone_e164="+13055550123",
    )
    joined = crm.upsert_lead(repeat, None)
    assert (joined.external_id, joined.created) == (first.external_id, False)
    # The same email in another tenant is another contact.
    elsewhere = crm.upsert_lead(
        LeadView(tenant=other, lead_id=lead.lead_id, source="form", email="ada@example.com"), None
    )
    assert elsewhere.created
    assert elsewhere.external_id != first.external_id

    with Session(engine) as session:
        contact = session.scalars(select(LocalCrmContact).where(LocalCrmContact.tenant == tenant)).one()
        assert contact.sync_count == 3
        assert contact.first_name == "Ada"  # not blanked by the sparser repeat
        assert contact.phone_e164 == "+13055550123"
        assert (contact.intent, contact.fit_score, contact.reasons) == ("high", 80, ["r"])


def test_local_crm_prefers_the_leads_own_contact_over_an_older_one_with_its_email(engine: Engine) -> None:
    crm = LocalCrm(engine)
    tenant = unique("acme")
    first = LeadView(tenant=tenant, lead_id=unique("lead"), source="api", email="ada@example.com")
    older = crm.upsert_lead(first, None)
    lead = LeadView(tenant=tenant, lead_id=unique("lead"), source="api", email="grace@example.com")
    own = crm.upsert_lead(lead, None)
    assert own.created
    assert own.external_id != older.external_id
    # The lead now gives the older contact's email: it still updates the contact it made.
    moved_lead = LeadView(tenant=tenant, lead_id=lead.lead_id, source="api", email="ada@example.com")
    moved = crm.upsert_lead(moved_lead, None)
    assert (moved.external_id, moved.created) == (own.external_id, False)
    with Session(engine) as session:
        counts = dict(
            session.execute(
                select(LocalCrmContact.external_id, LocalCrmContact.sync_count).where(
                    LocalCrmContact.tenant == tenant
                )
            ).all()
        )
    assert counts == {first.lead_id: 1, lead.lead_id: 2}


def test_local_crm_concurrent_upserts_make_one_contact(engine: Engine) -> None:
    crm = LocalCrm(engine)
    lead = LeadView(tenant=unique("acme"), lead_id=unique("lead"), source="form", email="race@example.com")
    results = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(crm.upsert_lead(lead, None))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r.external_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    with Session(engine) as session:
        count = session.scalar(
            select(func.count()).select_from(LocalCrmContact).where(LocalCrmContact.tenant == lead.tenant)
        )
        assert count == 1


# --- dial simulator ----------------------------------------------------------------------------


def simulator(
    engine: Engine, sender: CallbackSender, tenant: str, outcomes: str = "completed"
) -> DialSimulator:
    config = SimulatorConfig(
        outcomes=parse_outcomes(outcomes), duration_seconds=61, step_seconds=0.01, auth_token=TOKEN
    )
    return DialSimulator(engine, tenant, config, sender)


def call(tenant: str, attempt: str, callback: str) -> CallRequest:
    return CallRequest(
        attempt_id=attempt,
        tenant=tenant,
        lead_id="lead-1",
        to_e164="+13055550123",
        from_number="",
        status_callback_url=callback,
    )


def test_simulator_sends_signed_callbacks(
    engine: Engine, sender: CallbackSender, receiver: RecordingServer
) -> None:
    tenant = unique("acme")
    sim = simulator(engine, sender, tenant)
    callback = f"{receiver.url}/v1/calls/{tenant}/status?attempt_id=a1"
    first = sim.place_call(call(tenant, "a1", callback))
    assert first.provider_call_id.startswith("CA")
    assert len(first.provider_call_id) == 34

    wait_for(lambda: len(receiver.requests) >= 3, timeout=10, what="callbacks")
    # Give a wrongly-repeated lifecycle the chance to show up before counting.
    wait_for(lambda: sender.pending() == 0, timeout=10, what="sender idle")
    statuses = [r.form()["CallStatus"][0] for r in receiver.requests]
    assert statuses == ["ringing", "in-progress", "completed"]  # one lifecycle, not two
    for r in receiver.requests:
        params = {k: v[0] for k, v in r.form().items()}
        assert r.headers["content-type"].startswith("application/x-www-form-urlencoded")
        assert r.headers["x-twilio-signature"] == _independent_twilio_signature(TOKEN, callback, params)
        assert params["CallSid"] == first.provider_call_id
        assert params["To"] == "+13055550123"
    assert {k: v[0] for k, v in receiver.requests[-1].form().items()}["CallDuration"] == "61"

    with Session(engine) as session:
        rows = session.scalars(select(SimulatedCall).where(SimulatedCall.tenant == tenant)).all()
        assert len(rows) == 1
        (row,) = rows
        assert row.status == "completed"
        assert row.callbacks_sent == 3
        assert row.to_masked == "+1******0123"
        assert "3055550123" not in row.to_hash
        assert row.ended_at is not None
    status = sim.fetch_status(first.provider_call_id)
    assert (status.status, status.duration_seconds, status.price_usd) == ("completed", 61, "0.0280")


def test_simulator_records_only_what_compliance_allowed(engine: Engine, sender: CallbackSender) -> None:
    tenant = unique("acme")
    sim = simulator(engine, sender, tenant)
    plain = sim.place_call(call(tenant, "r0", ""))
    announced = sim.place_call(replace(call(tenant, "r1", ""), record=True, recording_disclosure=True))
    one_party = sim.place_call(replace(call(tenant, "r2", ""), record=True))
    with Session(engine) as session:
        rows = {
            r.call_sid: (r.recorded, r.recording_announced)
            for r in session.scalars(select(SimulatedCall).where(SimulatedCall.tenant == tenant))
        }
    assert rows[plain.provider_call_id] == (False, False)
    assert rows[announced.provider_call_id] == (True, True)
    assert rows[one_party.provider_call_id] == (True, False)


def test_simulator_places_a_call_for_every_request(engine: Engine, sender: CallbackSender) -> None:
    """Like Twilio, no deduplication on the attempt id: five requests are five calls (only our
    reconciliation before a re-dial may prevent the second one), and the lookup sees them all."""
    tenant = unique("acme")
    sim = simulator(engine, sender, tenant)
    since = datetime.now(UTC) - timedelta(seconds=1)  # real time, as a carrier's clock
    sids: list[str] = []
    threads = [
        threading.Thread(target=lambda: sids.append(sim.place_call(call(tenant, "dup", "")).provider_call_id))
        for _ in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(sids)) == 5
    with Session(engine) as session:
        assert (
            session.scalar(
                select(func.count()).select_from(SimulatedCall).where(SimulatedCall.tenant == tenant)
            )
            == 5
        )
    found = sim.find_calls("+13055550123", "", since)
    assert sorted(c.provider_call_id for c in found) == sorted(sids)
    assert sim.find_calls("+13055550999", "", since) == []
    assert sim.find_calls("+13055550123", "", datetime.now(UTC) + timedelta(seconds=5)) == []


def test_simulator_outcomes_are_configurable_and_deterministic(
    engine: Engine, sender: CallbackSender, receiver: RecordingServer
) -> None:
    tenant = unique("acme")
    sim = simulator(engine, sender, tenant, outcomes="busy")
    sim.place_call(call(tenant, "b1", receiver.url + "/cb"))
    wait_for(lambda: len(receiver.requests) >= 2, timeout=10, what="callbacks")
    assert [r.form()["CallStatus"][0] for r in receiver.requests] == ["ringing", "busy"]
    assert receiver.requests[-1].form()["CallDuration"] == ["0"]

    weighted = parse_outcomes("completed:2,no-answer:1,busy:1")
    picks = {pick_outcome(weighted, f"att-{i}") for i in range(200)}
    assert picks == {"completed", "no-answer", "busy"}
    assert all(pick_outcome(weighted, "same") == pick_outcome(weighted, "same") for _ in range(5))
    with pytest.raises(ValueError, match="unknown simulated outcome"):
        parse_outcomes("answered")


def test_simulator_reconciles_a_call_whose_callbacks_were_lost(
    engine: Engine, sender: CallbackSender
) -> None:
    tenant = unique("acme")
    sim = simulator(engine, sender, tenant, outcomes="no-answer")
    sid = sim.place_call(call(tenant, "lost", "")).provider_call_id  # no callback URL: nothing sent
    with Session(engine) as session, session.begin():
        session.execute(
            update(SimulatedCall)
            .where(SimulatedCall.call_sid == sid)
            .values(due_at=utcnow() - timedelta(seconds=1))
        )
    assert sim.fetch_status(sid).status == "no-answer"
    # Another tenant cannot see it.
    with pytest.raises(ProviderError) as err:
        simulator(engine, sender, unique("globex")).fetch_status(sid)
    assert err.value.error_class is ErrorClass.VALIDATION


def test_simulator_refuses_bad_numbers_and_other_tenants(engine: Engine, sender: CallbackSender) -> None:
    tenant = unique("acme")
    sim = simulator(engine, sender, tenant)
    bad = CallRequest(
        attempt_id="x", tenant=tenant, lead_id="l", to_e164="305-555", from_number="", status_callback_url=""
    )
    with pytest.raises(ProviderError) as err:
        sim.place_call(bad)
    assert err.value.error_class is ErrorClass.VALIDATION
    with pytest.raises(ProviderError) as err:
        sim.place_call(call("someone-else", "x", ""))
    assert err.value.error_class is ErrorClass.SYSTEM


def test_callbacks_are_retried_when_the_receiver_fails(sender: CallbackSender) -> None:
    with RecordingServer() as receiver:
        receiver.fail(times=2, status=503)
        sender.schedule(0, receiver.url + "/cb", {"CallSid": "CA1", "CallStatus": "completed"}, TOKEN)
        wait_for(lambda: len(receiver.requests) == 3, timeout=10, what="three deliveries")


def test_callbacks_of_other_calls_pass_a_slow_one_and_a_calls_own_keep_their_order(
    sender: CallbackSender,
) -> None:
    """A carrier posts many calls' callbacks side by side; one call's stay in order."""
    with RecordingServer() as receiver:
        receiver.stall(times=1, seconds=3.0, path_contains="/slow")
        sender.schedule(0, receiver.url + "/slow", {"CallSid": "CAslow", "CallStatus": "ringing"}, TOKEN)
        wait_for(lambda: receiver.requests_to("/slow"), timeout=5, what="the stalled callback")
        sender.schedule(0, receiver.url + "/cb", {"CallSid": "CAslow", "CallStatus": "completed"}, TOKEN)
        for n in range(8):
            sender.schedule(
                0, receiver.url + "/cb", {"CallSid": f"CAother{n}", "CallStatus": "ringing"}, TOKEN
            )
        # Other calls' callbacks arrive while the slow one is still unanswered...
        others = wait_for(
            lambda: [r for r in receiver.requests_to("/cb") if b"CAother" in r.body],
            timeout=2.0,
            what="other calls' callbacks during the stall",
        )
        assert not [r for r in receiver.requests_to("/cb") if b"CAslow" in r.body], others
        # ...and the slow call's next one only after its first was answered.
        wait_for(
            lambda: [r for r in receiver.requests_to("/cb") if b"CAslow" in r.body],
            timeout=10,
            what="the slow call's second callback",
        )
        slow = [r.form()["CallStatus"][0] for r in receiver.requests if b"CAslow" in r.body]
        assert slow == ["ringing", "completed"]


def test_a_callback_after_the_receiver_dropped_the_idle_connection_goes_out_afresh() -> None:
    """A lane keeps its connection open between callbacks; a receiver (or a proxy) that closed
    it meanwhile costs no delivery: with a single attempt allowed, both callbacks arrive, each
    on a connection of its own."""
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer_once_then_hang_up() -> None:
            for _ in range(2):
                conn, _ = server.accept()
                with conn:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = int(
                        next(
                            line.split(b":")[1]
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length")
                        )
                    )
                    while len(body) < length:
                        body += conn.recv(65536)
                    received.append(body)
                    # HTTP/1.1 without "Connection: close": the client may keep it, and finds it gone.
                    conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer_once_then_hang_up, daemon=True)
        thread.start()
        sender = CallbackSender(timeout=5, attempts=1, lanes=1)
        try:
            url = f"http://127.0.0.1:{port}/cb"
            sender.schedule(0, url, {"CallSid": "CA1", "CallStatus": "ringing"}, TOKEN)
            wait_for(lambda: len(received) == 1, timeout=5, what="the first callback")
            time.sleep(0.2)  # the receiver has hung up by now
            sender.schedule(0, url, {"CallSid": "CA1", "CallStatus": "completed"}, TOKEN)
            wait_for(lambda: len(received) == 2, timeout=5, what="the second callback, on a new connection")
        finally:
            sender.close()
        thread.join(5)
    assert [b"CallStatus=ringing" in received[0], b"CallStatus=completed" in received[1]] == [True, True]


def test_local_crm_find_lead_sees_the_contact_a_lead_wrote(engine: Engine) -> None:
    crm = LocalCrm(engine)
    tenant = unique("acme")
    lead = LeadView(tenant=tenant, lead_id=unique("lead"), source="form", email="find@example.com")
    assert crm.find_lead(lead) is None
    made = crm.upsert_lead(lead, None)
    assert crm.find_lead(lead) == type(made)(external_id=made.external_id, created=False)
    # A later lead of the same person joined that contact: its retry finds it too.
    later = LeadView(tenant=tenant, lead_id=unique("lead"), source="api", email="find@example.com")
    crm.upsert_lead(later, None)
    found = crm.find_lead(later)
    assert found is not None
    assert found.external_id == made.external_id
    # Another tenant's lead of the same id sees nothing.
    assert crm.find_lead(LeadView(tenant=unique("other"), lead_id=lead.lead_id, source="form")) is None
