"""The worker path's batch RPCs give the same answers and leave the same rows on PostgreSQL's
fixed statements (`worker_path_sql`) as on the portable ones SQLite keeps (the real PostgreSQL
of this run, both paths): GetLeads, RecordEvents, StartDials (`claim_many`, `mark_dialing`) and
CompleteDials (`complete_many`). Each scenario is seeded twice, under two tenants, and every
answer and row is compared with the tenant and the random ids taken out."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from leadflow.v1 import decision_pb2, dispatcher_pb2, lead_pb2
from leadflow_core.timestamps import utcnow
from leadflow_dispatcher.dial_batches import ClaimAsk, Dialed
from leadflow_dispatcher.models import CallStatusRow, DialAttemptRow, EventRow, JobRow, LeadRow
from leadflow_dispatcher.policies import PolicyView
from leadflow_dispatcher.repository import NotFound
from leadflow_dispatcher.store import Store
from leadflow_dispatcher.worker_reads import Report

NOW = utcnow()


@pytest.fixture(autouse=True)
def _now() -> None:
    """Each test's rows are stamped at its own start: an instant taken at import is many minutes
    old by the time a full run reaches this module, and would make a 5 s old claim look stale."""
    global NOW
    NOW = utcnow()


@pytest.fixture
def tenants(store: Store) -> Iterator[tuple[str, str]]:
    pair = (f"wp-{uuid.uuid4().hex[:8]}", f"wp-{uuid.uuid4().hex[:8]}")
    yield pair
    # Later modules' relays share this database: leave them no jobs of a made-up tenant.
    with store.sessions.begin() as s:
        names = [*pair, *(f"{t}-o" for t in pair)]
        s.execute(sa.delete(JobRow).where(JobRow.tenant.in_(names)))
        s.execute(sa.delete(DialAttemptRow).where(DialAttemptRow.tenant.in_(names)))
        s.execute(sa.delete(EventRow).where(EventRow.tenant.in_(names)))
        s.execute(sa.delete(CallStatusRow).where(CallStatusRow.tenant.in_(names)))
        s.execute(sa.delete(LeadRow).where(LeadRow.tenant.in_(names)))


def _portable(store: Store) -> Store:
    return Store(store.sessions, postgres=False)


class Ids:
    """Random ids per name, one set per tenant; `name()` maps an id back."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.by_name: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        return self.by_name.setdefault(name, uuid.uuid4().hex)

    def name(self, value: Any) -> Any:
        back = {v: k for k, v in self.by_name.items()}
        if isinstance(value, str):
            for real, name in back.items():
                value = value.replace(real, f"<{name}>")
            return value.replace(self.tenant, "<tenant>")
        if isinstance(value, dict):
            return {self.name(k): self.name(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.name(v) for v in value)
        return value


def _lead(
    ids: Ids,
    name: str,
    *,
    phone: str | None = None,
    email: str | None = None,
    age: float = 0,
    tenant: str = "",
) -> LeadRow:
    t = f"{ids.tenant}-o" if tenant == "other" else ids.tenant
    lead = lead_pb2.Lead(tenant=t, vendor_lead_id=name, contact=lead_pb2.Contact(first_name=name))
    decision = decision_pb2.Decision(decision_id=name, action=decision_pb2.DIAL_ACTION_DIAL_NOW)
    return LeadRow(
        id=ids(name),
        tenant=t,
        source="api",
        person_phone=phone and f"{ids.tenant}{phone}"[-32:],
        person_email=email and f"{ids.tenant}{email}"[-32:],
        urgency="high",
        lead_pb=lead.SerializeToString(),
        decision_pb=decision.SerializeToString(),
        dial_state=dispatcher_pb2.DIAL_STATE_SCHEDULED,
        version_at=NOW - timedelta(seconds=age),
        received_at=NOW,
        created_at=NOW,
        request_id=f"req-{name}",
    )


def _job(ids: Ids, lead: str, kind: str, state: str, attempt: int = 1) -> JobRow:
    return JobRow(
        id=ids(f"job-{lead}-{kind}-{attempt}"),
        tenant=ids.tenant,
        lead_id=ids(lead),
        kind=kind,
        attempt=attempt,
        queue=kind,
        state=state,
        due_at=NOW + timedelta(days=30),  # never due for another module's relay
        lease_until=NOW + timedelta(days=30) if state == "queued" else None,
        enqueue_count=0,
        broker_queue="",
        broker_message_id="",
        payload={},
        request_id="",
        last_error="",
        updated_at=NOW - timedelta(hours=1),
    )


def _attempt(
    ids: Ids, lead: str, state: str, *, age: float = 0, attempt: int = 1, **extra: Any
) -> DialAttemptRow:
    return DialAttemptRow(
        id=ids(f"att-{lead}"),
        tenant=ids.tenant,
        lead_id=ids(lead),
        attempt=attempt,
        state=state,
        tries=2,
        claimed_at=NOW - timedelta(seconds=age),
        dialing_at=NOW - timedelta(seconds=age) if state != "claimed" else None,
        reservation_id=extra.pop("reservation_id", "res-old"),
        **extra,
    )


def _rows(store: Store, ids: Ids) -> dict[str, list[Any]]:
    """Every row of the tenant, ids named, times of this run replaced by whether they moved."""

    def moved(at: datetime | None) -> str | None:
        return None if at is None else ("old" if at < NOW else "new")

    with store.sessions() as s:
        t = ids.tenant
        leads = s.scalars(sa.select(LeadRow).where(LeadRow.tenant == t).order_by(LeadRow.received_at)).all()
        jobs = s.scalars(sa.select(JobRow).where(JobRow.tenant == t)).all()
        attempts = s.scalars(sa.select(DialAttemptRow).where(DialAttemptRow.tenant == t)).all()
        events = s.scalars(sa.select(EventRow).where(EventRow.tenant == t).order_by(EventRow.id)).all()
        statuses = s.scalars(sa.select(CallStatusRow).where(CallStatusRow.tenant == t)).all()
        out = {
            "leads": sorted(ids.name([r.id, r.dial_state, r.enrichment]) for r in leads),
            "jobs": sorted(
                ids.name(
                    [
                        r.lead_id,
                        r.kind,
                        r.attempt,
                        r.state,
                        moved(r.updated_at),
                        str(r.lease_until and r.lease_until - NOW),
                    ]
                )
                for r in jobs
            ),
            "attempts": sorted(
                ids.name(
                    [
                        r.lead_id,
                        r.attempt,
                        r.state,
                        r.tries,
                        r.provider,
                        r.provider_call_id,
                        r.reservation_id,
                        r.call_status,
                        r.error,
                        moved(r.claimed_at),
                        moved(r.dialing_at),
                        moved(r.dialed_at),
                        moved(r.ended_at),
                    ]
                )
                for r in attempts
            ),
            # Events in insertion order (their ids), fresh attempt ids named by their lead.
            "events": [
                ids.name(
                    [
                        r.lead_id,
                        r.kind,
                        _named_attempts(attempts, r.detail),
                        r.request_id,
                        _named_attempts(attempts, r.dedupe_key),
                    ]
                )
                for r in events
            ],
            "statuses": sorted(ids.name([r.provider_call_id, r.status, r.applied]) for r in statuses),
        }
    return out


def _named_attempts(attempts: Any, value: Any) -> Any:
    for a in attempts:
        if isinstance(value, str):
            value = value.replace(a.id, f"<attempt of {a.lead_id}>")
        elif isinstance(value, dict) and value.get("attempt_id") == a.id:
            value = {**value, "attempt_id": f"<attempt of {a.lead_id}>"}
    return value


def _both(
    store: Store, tenants: tuple[str, str], seed: Callable[[Ids], list[Any]], run: Callable[[Store, Ids], Any]
) -> tuple[Any, Any, Ids, Ids]:
    """`run` on PostgreSQL's statements and on the portable ones, each over its own seeded tenant;
    the two answers and row sets, named."""
    answers = []
    all_ids = []
    for tenant, path in zip(tenants, (store, _portable(store)), strict=True):
        ids = Ids(tenant)
        with store.sessions.begin() as s:
            s.add_all(seed(ids))
        answer = run(path, ids)
        answers.append((ids.name(_plain(answer)), _rows(store, ids)))
        all_ids.append(ids)
    assert answers[0] == answers[1]
    return answers[0][0], answers[0][1], all_ids[0], all_ids[1]


def _plain(answer: Any) -> Any:
    if isinstance(answer, (list, tuple)):
        return [_plain(a) for a in answer]
    if isinstance(answer, set):
        return sorted(answer)
    if isinstance(answer, NotFound):
        return ["NotFound", *answer.args]
    if isinstance(answer, dispatcher_pb2.GetLeadResponse):
        return str(answer)
    if hasattr(answer, "__dataclass_fields__"):
        return {k: _plain(getattr(answer, k)) for k in answer.__dataclass_fields__}
    if isinstance(answer, lead_pb2.Lead):
        return answer.vendor_lead_id
    if isinstance(answer, datetime):
        return "old" if answer < NOW else "new"
    return answer


def test_get_leads_answers_as_the_portable_reads(store: Store, tenants: tuple[str, str]) -> None:
    def seed(ids: Ids) -> list[Any]:
        return [
            _lead(ids, "a", phone="p1", age=30),
            _lead(ids, "b", phone="p1", age=10),  # the same person, stamped later: supersedes a
            _lead(ids, "c", email="e1", age=20),
            _lead(ids, "d", email="e1", age=40),  # older: supersedes nothing
            _lead(ids, "x", tenant="other"),
            _job(ids, "a", "enrich", "done"),
            _job(ids, "a", "crm_sync", "queued"),
            _job(ids, "c", "crm_sync", "done"),
        ]

    def run(path: Store, ids: Ids) -> Any:
        t = ids.tenant
        refs = [
            (t, ids("a")),
            (t, ids("b")),
            (t, ids("c")),
            (t, ids("x")),
            (t, ids("missing")),
            (t, ""),
            (t, ids("a")),
        ]
        return path.get_leads(refs)

    answer, _, _ids, _ = _both(store, tenants, seed, run)
    assert [a if isinstance(a, list) else "found" for a in answer][3:6] == [
        ["NotFound", "<x>"],
        ["NotFound", "<missing>"],
        ["NotFound", ""],
    ]
    assert 'superseded_by: "<b>"' in answer[0]
    assert 'work_done: "enriched"' in answer[0]
    assert "superseded_by" not in answer[1]
    assert 'work_done: "synced"' in answer[2]


def test_get_leads_names_the_newest_later_lead_of_the_person_by_phone_or_email(
    store: Store, tenants: tuple[str, str]
) -> None:
    """A lead known by phone and email is superseded by its person's newest later lead through
    either; a lead sharing neither is not its person, nor is one of another tenant."""

    def seed(ids: Ids) -> list[Any]:
        return [
            _lead(ids, "m", phone="p2", email="e2", age=30),
            _lead(ids, "n", phone="p2", age=20),  # later, by phone
            _lead(ids, "o", email="e2", age=5),  # later still, by email: the newest of m's person
            _lead(ids, "q", phone="p2", age=1, tenant="other"),
        ]

    def run(path: Store, ids: Ids) -> Any:
        return path.get_leads([(ids.tenant, ids(name)) for name in ("m", "n", "o")])

    answer, _, _ids, _ = _both(store, tenants, seed, run)
    assert 'superseded_by: "<o>"' in answer[0]
    # n shares m's phone only, o m's email only: n and o are not one person.
    assert "superseded_by" not in answer[1]
    assert "superseded_by" not in answer[2]


def test_record_events_writes_as_the_portable_statements(store: Store, tenants: tuple[str, str]) -> None:
    def seed(ids: Ids) -> list[Any]:
        return [
            _lead(ids, "a"),
            _lead(ids, "b"),
            _lead(ids, "c"),
            _lead(ids, "d"),
            _lead(ids, "x", tenant="other"),
            _job(ids, "a", "enrich", "queued"),
            _job(ids, "b", "crm_sync", "dead"),
            _job(ids, "c", "crm_sync", "cancelled"),
            _job(ids, "b", "enrich", "queued", attempt=2),
            _job(ids, "c", "enrich", "pending", attempt=2),
            EventRow(
                tenant=ids.tenant,
                lead_id=ids("a"),
                kind="note",
                detail={},
                request_id="",
                dedupe_key="seen",
                at=NOW,
            ),
        ]

    def run(path: Store, ids: Ids) -> Any:
        t = ids.tenant
        retry = NOW + timedelta(seconds=60)

        def report(
            lead: str, kind: str, detail: dict[str, Any], key: str, at: datetime | None = None
        ) -> Report:
            return Report(t, ids(lead), kind, detail, key, f"r-{lead}-{kind}", at)

        return path.record_events(
            [
                report("a", "enriched", {"score": 7, "tags": ["x", "é"]}, "k-enriched-a"),
                report("a", "enriched", {"score": 8}, "k-enriched-a"),  # the same report twice
                report("a", "note", {}, "seen"),  # recorded before: a redelivery
                report("b", "synced", {"crm": "id-1"}, "k-synced-b"),  # its job is dead: done now
                report("c", "synced", {}, "k-synced-c"),  # its job was cancelled: it stays so
                report("x", "synced", {}, "k-x"),  # another tenant's lead
                report("b", "enrich_retry", {"job": "enrich", "attempt": 2}, "k-retry-b", retry),  # lease
                report("c", "enrich_retry", {"job": "enrich", "attempt": 2}, "k-retry-c", retry),  # pending
                report("b", "no_key", {"n": 1}, ""),
                report("b", "no_key", {"n": 2}, ""),  # without a key every report lands
                report("d", "enriched", {"score": 1}, "k-enriched-d1"),
                report("d", "enriched", {"score": 2}, "k-enriched-d2"),  # enriched twice: the later
            ],
            lease_seconds=30,
        )

    answer, rows, _ids, _ = _both(store, tenants, seed, run)
    assert answer == [True, False, False, True, True, ["NotFound", "<x>"], True, True, True, True, True, True]
    assert ["<a>", "enrich", 1, "done", "new", "30 days, 0:00:00"] in rows["jobs"]
    assert ["<b>", "crm_sync", 1, "done", "new", "None"] in rows["jobs"]
    assert ["<c>", "crm_sync", 1, "cancelled", "old", "None"] in rows["jobs"]
    assert ["<b>", "enrich", 2, "queued", "new", "0:01:30"] in rows["jobs"]  # retry + lease
    assert ["<c>", "enrich", 2, "pending", "old", "None"] in rows["jobs"]
    assert ["<a>", dispatcher_pb2.DIAL_STATE_SCHEDULED, {"score": 7, "tags": ["x", "é"]}] in rows["leads"]
    assert [e[1] for e in rows["events"]] == [
        "note",
        "enriched",
        "synced",
        "synced",
        "enrich_retry",
        "enrich_retry",
        "no_key",
        "no_key",
        "enriched",
        "enriched",
    ]
    assert ["<d>", dispatcher_pb2.DIAL_STATE_SCHEDULED, {"score": 2}] in rows["leads"]


def test_claims_and_marks_as_the_portable_statements(store: Store, tenants: tuple[str, str]) -> None:
    def seed(ids: Ids) -> list[Any]:
        rows: list[Any] = [
            _lead(ids, n) for n in ("fresh", "failed", "unsure", "busy", "stale", "cancelled", "nojob")
        ]
        rows.append(_lead(ids, "x", tenant="other"))
        rows += [_job(ids, n, "dial", "queued") for n in ("fresh", "failed", "unsure", "busy", "stale")]
        rows.append(_job(ids, "cancelled", "dial", "cancelled"))
        rows += [
            _attempt(ids, "failed", "failed", error="boom"),
            _attempt(ids, "unsure", "unsure", reservation_id="res-u"),
            _attempt(ids, "busy", "dialing", age=5),
            _attempt(ids, "stale", "claimed", age=3600),
        ]
        return rows

    def run(path: Store, ids: Ids) -> Any:
        t = ids.tenant
        asks = [
            ClaimAsk(t, ids(n), 1, f"r-{n}")
            for n in (
                "fresh",
                "fresh",
                "failed",
                "unsure",
                "busy",
                "stale",
                "cancelled",
                "nojob",
                "x",
                "missing",
            )
        ]
        claims = path.claim_many(asks, stale_seconds=600)
        for c in claims:  # name the attempts this claim inserted
            if not isinstance(c, NotFound) and c.attempt_id:
                ids.by_name.setdefault(f"att-{c.lead.vendor_lead_id}", c.attempt_id)
        won = [c for c in claims if not isinstance(c, NotFound) and c.claimed and not c.reconcile]
        # The gate lets every won claim through but one, one twice; a reconciling one is not "claimed".
        reserved = [(t, c.attempt_id, f"res-{i}") for i, c in enumerate(won[1:])]
        reserved += [(t, won[-1].attempt_id, "res-again"), ("other", won[0].attempt_id, "res-x")]
        reserved += [
            (t, c.attempt_id, "res-r") for c in claims if not isinstance(c, NotFound) and c.reconcile
        ]
        marked = path.mark_dialing(reserved)
        named = {c.attempt_id: c.lead.vendor_lead_id for c in claims if not isinstance(c, NotFound)}
        return claims, sorted(named[m] for m in marked)

    answer, rows, _ids, _ = _both(store, tenants, seed, run)
    claims, marked = answer
    assert [(c["claimed"], c["state"]) if isinstance(c, dict) else c[0] for c in claims] == [
        (True, "claimed"),
        (False, "claimed"),
        (True, "claimed"),
        (True, "reconciling"),
        (False, "dialing"),
        (True, "claimed"),
        (False, "cancelled"),
        (False, "unknown"),
        "NotFound",
        "NotFound",
    ]
    assert marked == ["failed", "stale"]  # the first won claim ("fresh") was held back
    states = {a[0]: (a[2], a[3], a[6]) for a in rows["attempts"]}
    assert states == {
        "<fresh>": ("claimed", 1, ""),
        "<failed>": ("dialing", 3, "res-0"),
        "<unsure>": ("reconciling", 3, "res-u"),
        "<busy>": ("dialing", 2, "res-old"),
        "<stale>": ("dialing", 3, "res-1"),
    }
    assert sorted(e[1] for e in rows["events"]) == ["dial_reconciling", "dialing", "dialing", "dialing"]


def test_complete_many_writes_as_the_portable_statements(store: Store, tenants: tuple[str, str]) -> None:
    def seed(ids: Ids) -> list[Any]:
        rows: list[Any] = [_lead(ids, n) for n in ("a", "b", "early", "done")]
        rows += [_job(ids, n, "dial", "queued") for n in ("a", "b", "early")]
        rows += [
            _attempt(ids, "a", "dialing"),
            _attempt(ids, "b", "dialing", reservation_id="res-b"),
            _attempt(ids, "early", "dialing"),
            _attempt(ids, "done", "dialed", provider="sim", provider_call_id=f"{ids.tenant}-old"),
            # A final callback that outran its report: applied once the report lands.
            CallStatusRow(
                tenant=ids.tenant,
                provider_call_id=f"{ids.tenant}-call-early",
                status="completed",
                duration_seconds=42,
                price_usd="0.10",
                params={},
                applied=False,
                at=NOW,
            ),
        ]
        return rows

    def run(path: Store, ids: Ids) -> Any:
        t = ids.tenant

        def dialed(lead: str, reservation: str = "", tenant: str = "") -> Dialed:
            return Dialed(
                tenant or t, ids(f"att-{lead}"), f"{t}-call-{lead}", "sim", reservation, f"r-{lead}"
            )

        return path.complete_many(
            [
                dialed("a", "res-new"),
                dialed("b"),  # no reservation in the report: the attempt keeps its own
                dialed("a", "res-again"),  # the same report twice in one batch: once
                dialed("done"),  # redelivered
                dialed("early", "res-e"),
                dialed("a", tenant="other"),
                Dialed(t, ids("att-missing"), "", "sim", "", "r"),
            ],
            lambda _tenant: PolicyView(),
        )

    answer, rows, _ids, _ = _both(store, tenants, seed, run)
    assert answer == [None, None, None, None, None, ["NotFound", "<att-a>"], ["NotFound", "<att-missing>"]]
    attempts = {a[0]: a for a in rows["attempts"]}
    assert attempts["<a>"][2:7] == ["dialed", 2, "sim", "<tenant>-call-a", "res-new"]
    assert attempts["<b>"][2:7] == ["dialed", 2, "sim", "<tenant>-call-b", "res-b"]
    assert attempts["<early>"][2:8] == ["ended", 2, "sim", "<tenant>-call-early", "res-e", "completed"]
    assert attempts["<done>"][2] == "dialed"
    assert attempts["<done>"][11] is None
    assert rows["statuses"] == [["<tenant>-call-early", "completed", True]]
    assert sorted(j[:4] for j in rows["jobs"] if j[1] == "dial") == [
        ["<a>", "dial", 1, "done"],
        ["<b>", "dial", 1, "done"],
        ["<early>", "dial", 1, "done"],
    ]
    dialed_leads = sorted(lead[0] for lead in rows["leads"] if lead[1] == dispatcher_pb2.DIAL_STATE_DIALED)
    assert dialed_leads[:2] == ["<a>", "<b>"]
    assert [e[1] for e in rows["events"]].count("dialed") == 3
