"""State do-not-call lists: one list per jurisdiction ("state:TX", "state:FL", ...), streamed in.

The file format is the National DNC Registry's (dnc_registry.py): one number a line, optionally
with a change file's `,A` / `,D` action column. A full file (`replace`) swaps the state's whole
list in one transaction; a change file adds and deletes in one transaction (a number both added
and deleted in one file stays listed, the safe side). Memory stays flat: numbers go in batches.

Lists are deployment-wide, like the national registry: an operator loads each state list the
deployment is licensed for, and every tenant's evaluation reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from leadflow_compliance.dnc_registry import ImportResult, _batches, _Parser
from leadflow_compliance.models import DncListEntry, DncListLoad
from leadflow_compliance.phone import STATE_CODES
from leadflow_core.db import is_sqlite

FEDERAL = "federal"
STATE_PREFIX = "state:"


def parse_list_id(value: str) -> str | None:
    """The state code of a list id ("state:TX" -> "TX"); None for the national registry.

    Raises ValueError naming what is accepted for anything else."""
    name = value.strip()
    if name in ("", FEDERAL):
        return None
    code = name[len(STATE_PREFIX) :].upper() if name.lower().startswith(STATE_PREFIX) else ""
    if code not in STATE_CODES:
        raise ValueError(f"unknown list {value!r}: use 'federal' or 'state:XX' with a US state code")
    return code


def list_id(code: str) -> str:
    return STATE_PREFIX + code


def load(
    engine: Engine, code: str, chunks: Iterable[bytes], replace: bool, now: datetime, batch: int = 20_000
) -> ImportResult:
    name = list_id(code)
    parser = _Parser()
    sqlite = is_sqlite(str(engine.url))
    insert = sqlite_insert if sqlite else pg_insert
    rejected_deletes = 0
    deletes: set[int] = set()
    added: set[int] = set()
    with engine.begin() as conn:
        if not sqlite:
            # One import of a list at a time; readers keep the committed copy meanwhile.
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "compliance_dnc_list:" + name}
            )
        if replace:
            conn.execute(delete(DncListEntry).where(DncListEntry.list_id == name))
        for entries in _batches(parser, chunks, batch):
            adds = [n for n, is_delete in entries if not is_delete]
            if replace:
                rejected_deletes += len(entries) - len(adds)
            else:
                deletes.update(n for n, is_delete in entries if is_delete)
                added.update(adds)
            if adds:
                stmt = insert(DncListEntry).on_conflict_do_nothing()
                conn.execute(stmt, [{"list_id": name, "number": n} for n in adds])
        removed = 0
        doomed = sorted(deletes - added)
        for start in range(0, len(doomed), batch):
            part = doomed[start : start + batch]
            result = conn.execute(
                delete(DncListEntry).where(DncListEntry.list_id == name, DncListEntry.number.in_(part))
            )
            removed += result.rowcount
        count = conn.execute(
            select(func.count()).select_from(DncListEntry).where(DncListEntry.list_id == name)
        ).scalar_one()
        values = {"version": parser.version, "loaded_at": now, "numbers": count}
        conn.execute(
            insert(DncListLoad)
            .values(list_id=name, **values)
            .on_conflict_do_update(index_elements=[DncListLoad.list_id], set_=values)
        )
    return ImportResult(int(count), parser.rejected + rejected_deletes, parser.version, removed)
