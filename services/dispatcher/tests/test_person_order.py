"""Identity and order per (person, campaign): merges within the window, arrival order of a
person's work under concurrent submissions, other people in parallel; real process, PostgreSQL
and Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, create_engine, text

from leadflow.v1 import dispatcher_pb2, dispatcher_pb2_grpc, lead_pb2
from leadflow_core.db import normalise_url
from leadflow_core.grpc_clients import channel
from leadflow_core.testing import ServiceProcess, python_module, service_env, wait_for
from leadflow_core.timestamps import to_proto

from .conftest import dial_now, make_lead
from .test_dispatcher import kinds, queued_leads

Stub = dispatcher_pb2_grpc.DispatcherServiceStub


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[Engine]:
    engine = create_engine(normalise_url(database_url))
    yield engine
    engine.dispose()


def lead_for(tenant: str, vendor_id: str, email: str, campaign: str, **contact: str) -> lead_pb2.Lead:
    lead = make_lead(tenant, vendor_id, email=email, phone=contact.pop("phone", "+13055550123"))
    lead.campaign = campaign
    for name, value in contact.items():
        setattr(lead.contact, name, value)
    return lead


def consent(at: str, cert: str) -> lead_pb2.ConsentEvidence:
    return lead_pb2.ConsentEvidence(
        granted=True,
        disclosure_text="You agree ACME may call you.",
        consented_at=to_proto(datetime.fromisoformat(at)),
        trustedform_cert_url=f"https://cert.trustedform.com/{cert}",
    )


def test_same_person_and_campaign_merge_newer_fields_earliest_consent_one_call(
    stub: Stub, tenant: str, db: Engine
) -> None:
    first = lead_for(tenant, "v-1", "ada@example.com", "spring", first_name="Ada", phone="+13055550140")
    first.consent.CopyFrom(consent("2026-11-30T10:00:00+00:00", "early"))
    first.message = "furnace quote"
    a = stub.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=first, decision=dial_now()))
    # Another source, another phone format's E.164, the same email: the same person.
    second = lead_for(tenant, "", "ada@example.com", "spring", first_name="Adeline", phone="+13055550141")
    second.source = lead_pb2.SOURCE_FORM
    second.idempotency_key = "form-1"
    second.consent.CopyFrom(consent("2026-11-30T11:00:00+00:00", "late"))
    b = stub.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=second, decision=dial_now()))
    assert (b.lead_id, b.duplicate, b.merged) == (a.lead_id, True, True)
    got = stub.GetLead(dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=a.lead_id)).lead
    assert got.contact.first_name == "Adeline"
    assert got.contact.phone.e164 == "+13055550141"
    assert got.message == "furnace quote"  # the newer lead had none: the stored one stays
    assert got.consent.trustedform_cert_url.endswith("/early")
    assert "merged" in kinds(stub, tenant, a.lead_id)
    with db.connect() as conn:
        leads = conn.execute(text("SELECT COUNT(*) FROM dispatcher_leads WHERE tenant = :t"), {"t": tenant})
        dials = conn.execute(
            text("SELECT COUNT(*) FROM dispatcher_jobs WHERE tenant = :t AND kind = 'dial'"), {"t": tenant}
        )
        assert (leads.scalar_one(), dials.scalar_one()) == (1, 1)
    # The merged submission's key keeps answering with the same lead.
    again = stub.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=second, decision=dial_now()))
    assert (again.lead_id, again.duplicate) == (a.lead_id, True)
    # Another campaign is another lead (and joins the pending call: still one dial).
    c = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(
            lead=lead_for(tenant, "v-3", "ada@example.com", "fall"), decision=dial_now()
        )
    )
    assert not c.duplicate
    assert c.lead_id != a.lead_id


def test_consent_without_evidence_does_not_replace_evidence_and_later_evidence_fills_a_gap(
    stub: Stub, tenant: str
) -> None:
    bare = lead_for(tenant, "b-1", "bob@example.com", "c1")
    a = stub.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=bare, decision=dial_now()))
    with_evidence = lead_for(tenant, "b-2", "bob@example.com", "c1")
    with_evidence.consent.CopyFrom(consent("2026-11-30T12:00:00+00:00", "only"))
    stub.SubmitLead(dispatcher_pb2.SubmitLeadRequest(lead=with_evidence, decision=dial_now()))
    got = stub.GetLead(dispatcher_pb2.GetLeadRequest(tenant=tenant, lead_id=a.lead_id)).lead
    assert got.consent.trustedform_cert_url.endswith("/only")


def test_find_leads_by_sender_id_includes_merged_ones(stub: Stub, tenant: str) -> None:
    a = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(
            lead=lead_for(tenant, "m-1", "cy@example.com", "k"), decision=dial_now()
        )
    )
    stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(
            lead=lead_for(tenant, "m-2", "cy@example.com", "k"), decision=dial_now()
        )
    )
    found = stub.FindLeads(
        dispatcher_pb2.FindLeadsRequest(
            tenant=tenant, source=lead_pb2.SOURCE_API, vendor_lead_ids=["m-1", "m-2", "m-unknown"]
        )
    )
    assert {f.vendor_lead_id: (f.lead.lead_id, f.lead.merged) for f in found.found} == {
        "m-1": (a.lead_id, False),
        "m-2": (a.lead_id, True),
    }
    other_tenant = stub.FindLeads(
        dispatcher_pb2.FindLeadsRequest(
            tenant=tenant + "x", source=lead_pb2.SOURCE_API, vendor_lead_ids=["m-1"]
        )
    )
    assert list(other_tenant.found) == []


def test_concurrent_submissions_of_one_person_and_campaign_make_one_lead(
    stub: Stub, tenant: str, db: Engine
) -> None:
    leads = [lead_for(tenant, f"c-{i}", "eve@example.com", "winter", first_name=f"Eve{i}") for i in range(10)]

    def submit(lead: lead_pb2.Lead) -> dispatcher_pb2.SubmitLeadResponse:
        reply: dispatcher_pb2.SubmitLeadResponse = stub.SubmitLead(
            dispatcher_pb2.SubmitLeadRequest(lead=lead, decision=dial_now())
        )
        return reply

    with ThreadPoolExecutor(max_workers=10) as pool:
        replies = list(pool.map(submit, leads))
    assert len({r.lead_id for r in replies}) == 1
    assert sorted(r.merged for r in replies) == [False] + [True] * 9
    with db.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT (SELECT COUNT(*) FROM dispatcher_leads WHERE tenant = :t),"
                " (SELECT COUNT(*) FROM dispatcher_jobs WHERE tenant = :t AND kind = 'dial'),"
                " (SELECT COUNT(*) FROM dispatcher_lead_aliases WHERE tenant = :t)"
            ),
            {"t": tenant},
        ).one()
    assert tuple(counts) == (1, 1, 9)
    assert kinds(stub, tenant, replies[0].lead_id).count("merged") == 9


# ---- arrival order: a dispatcher whose merge window is 0, so every submission is a lead ---------


@pytest.fixture(scope="module")
def unmerged(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stub]:
    workdir: Path = tmp_path_factory.mktemp("dispatcher-order")
    env = service_env(
        database_url,
        redis_url,
        redis_prefix,
        {
            "LEADFLOW_DISPATCHER_ADDR": "127.0.0.1:0",
            "LEADFLOW_DISPATCHER_METRICS_ADDR": "127.0.0.1:0",
            "LEADFLOW_COMPLIANCE_ADDR": "127.0.0.1:1",
            "LEADFLOW_DIAL_DELAY_SECONDS": json.dumps({"emergency": 0, "high": 0, "medium": 0, "low": 3600}),
            "LEADFLOW_MERGE_WINDOW_SECONDS": "0",
            "LEADFLOW_JOB_LEASE_SECONDS": "600",
            "LEADFLOW_RELAY_INTERVAL_SECONDS": "0.2",
        },
    )
    proc = ServiceProcess("dispatcher-order", python_module("leadflow_dispatcher"), env, workdir).start()
    ch = channel(proc.addr)
    yield dispatcher_pb2_grpc.DispatcherServiceStub(ch)
    ch.close()
    proc.stop()


def enrich_queued(rds: redis.Redis, prefix: str, tenant: str) -> set[str]:
    return {str(args[1]) for _, args in queued_leads(rds, prefix, "enrich") if args[0] == tenant}


def enrich_states(db: Engine, tenant: str, by_seq: list[str]) -> list[str]:
    """The enrich jobs' states in arrival order (a failure message, never PII)."""
    with db.connect() as conn:
        states: dict[str, str] = dict(
            conn.execute(
                text("SELECT lead_id, state FROM dispatcher_jobs WHERE tenant = :t AND kind = 'enrich'"),
                {"t": tenant},
            ).all()
        )
    return [str(states.get(lead_id)) for lead_id in by_seq]


def test_concurrent_submissions_of_one_person_run_in_arrival_order_others_in_parallel(
    unmerged: Stub, tenant: str, db: Engine, rds: redis.Redis, redis_prefix: str
) -> None:
    same = [lead_for(tenant, f"o-{i}", "dee@example.com", "spring") for i in range(8)]
    others = [
        lead_for(tenant, f"p-{i}", f"p{i}@example.com", "spring", phone=f"+1305555020{i}") for i in range(4)
    ]

    def submit(lead: lead_pb2.Lead) -> dispatcher_pb2.SubmitLeadResponse:
        reply: dispatcher_pb2.SubmitLeadResponse = unmerged.SubmitLead(
            dispatcher_pb2.SubmitLeadRequest(lead=lead, decision=dial_now())
        )
        return reply

    with ThreadPoolExecutor(max_workers=12) as pool:
        replies = list(pool.map(submit, same + others))
    assert not any(r.duplicate for r in replies)
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, order_key, order_seq FROM dispatcher_leads"
                " WHERE tenant = :t ORDER BY order_key, order_seq"
            ),
            {"t": tenant},
        ).all()
    same_ids = {r.lead_id for r in replies[: len(same)]}
    sequence = [(row.id, row.order_seq) for row in rows if row.id in same_ids]
    # One place each in the person's order, 1..8, whatever the interleaving of the requests.
    assert sorted(seq for _, seq in sequence) == list(range(1, len(same) + 1))
    assert len({row.order_key for row in rows if row.id in same_ids}) == 1
    by_seq = [lead_id for lead_id, _ in sorted(sequence, key=lambda x: x[1])]
    # Other people were sent at once; of this person only the first lead's enrich is out.
    other_ids = {r.lead_id for r in replies[len(same) :]}
    queued = enrich_queued(rds, redis_prefix, tenant)
    assert other_ids <= queued
    assert queued & same_ids == {by_seq[0]}, enrich_states(db, tenant, by_seq)
    # Each finished enrich releases exactly the next lead's, in arrival order.
    for k, lead_id in enumerate(by_seq):
        assert unmerged.RecordEvent(
            dispatcher_pb2.RecordEventRequest(
                tenant=tenant, lead_id=lead_id, kind="enriched", detail_json="{}", dedupe_key=f"e:{lead_id}"
            )
        ).recorded
        if k + 1 < len(by_seq):
            nxt = by_seq[k + 1]

            def sent(n: str = nxt) -> bool:
                return n in enrich_queued(rds, redis_prefix, tenant)

            wait_for(
                sent, timeout=60, what=f"enrich of lead {k + 2} sent: {enrich_states(db, tenant, by_seq)}"
            )
            assert enrich_queued(rds, redis_prefix, tenant) & same_ids == set(by_seq[: k + 2]), enrich_states(
                db, tenant, by_seq
            )
    # crm_sync was never finished for the first lead: the others' still wait, in order.
    with db.connect() as conn:
        states: dict[str, str] = dict(
            conn.execute(
                text("SELECT lead_id, state FROM dispatcher_jobs WHERE tenant = :t AND kind = 'crm_sync'"),
                {"t": tenant},
            ).all()
        )
    assert states[by_seq[0]] == "queued"
    assert {states[i] for i in by_seq[1:]} == {"pending"}
