"""An EvaluateBatch's audit records and consents go to PostgreSQL as one INSERT per table, not
one per evaluated lead; counted on a real PostgreSQL with a cursor listener, an executemany as
the one statement per row PostgreSQL runs for it. What is stored is what the records said."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from leadflow_compliance.models import AuditRow, ConsentRow
from leadflow_compliance.repository import PendingConsent, Repository
from leadflow_core.db import make_engine, make_sessionmaker


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = make_engine(database_url)
    yield e
    e.dispose()


def test_a_batch_of_audit_records_is_one_insert_per_table(engine: Engine) -> None:
    repo = Repository(make_sessionmaker(engine))
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    at = datetime.now(UTC).replace(microsecond=0)
    consented = at - timedelta(days=1)
    records: list[dict[str, Any]] = []
    for n in range(60):
        subject = f"s{n // 2:030d}"  # two leads per person: one consent row each person
        records.append(
            {
                "tenant": tenant,
                "at": at,
                "actor": "gateway",
                "action": "evaluate",
                "lead_id": f"lead-{n}",
                "subject": subject,
                "decision": {"action": "DIAL_NOW"} if n % 3 else None,
                "rules_version": "r1",
                "detail": {"n": n},
                "consent": PendingConsent(subject, consented, {"form": n // 2}, "gateway"),
            }
        )
    inserts: list[int] = []

    def count(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append(len(params) if many else 1)

    event.listen(engine, "before_cursor_execute", count)
    try:
        ids = repo.audit_many(records)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert sum(inserts) == 2, inserts  # the audit rows and the consents, one statement each
    with repo.sessions() as s:
        audits = {r.record_id: r for r in s.scalars(select(AuditRow).where(AuditRow.tenant == tenant))}
        consents = s.scalars(select(ConsentRow).where(ConsentRow.tenant == tenant)).all()
    assert sorted(audits) == sorted(ids)
    for record_id, r in zip(ids, records, strict=True):
        row = audits[record_id]
        assert (row.lead_id, row.subject_hash, row.decision, row.detail) == (
            r["lead_id"],
            r["subject"],
            r["decision"],
            r["detail"],
        )
    assert sorted((c.subject_hash, c.evidence["form"]) for c in consents) == [
        (f"s{p:030d}", p) for p in range(30)
    ]
