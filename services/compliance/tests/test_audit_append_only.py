"""PostgreSQL itself refuses to change or delete audit records."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from leadflow_core.db import normalise_url


@pytest.mark.parametrize(
    "statement", ["UPDATE compliance_audit SET actor = 'x'", "DELETE FROM compliance_audit"]
)
def test_audit_rows_cannot_change(database_url: str, statement: str) -> None:
    engine = create_engine(normalise_url(database_url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO compliance_audit (record_id, tenant, at, actor, action, lead_id, subject_hash,"
                " rules_version, detail)"
                " VALUES (md5(random()::text), 't', now(), 'a', 'test', '', '', '', '{}')"
            )
        )
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    engine.dispose()
