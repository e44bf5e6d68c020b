"""A session's pending (new) ORM objects written with set-based Core INSERTs, not the ORM flush.

Why: a SubmitLeads batch adds a few hundred new rows and flushes them once, and the ORM's unit
of work spent more Python CPU on them than the rows themselves cost: per-object state and
history bookkeeping, identity-map updates, and for tables with an autoincrement key (the
timeline events) fetching the new keys back and setting them on every object. Nobody reads
those keys in the batch path, so here the rows are built straight from the objects' attributes
and written with one executemany INSERT per table (per set of columns); the database assigns
the autoincrement keys and Core applies the columns' Python defaults, as under the ORM flush.
The objects are then expunged: they are written, not persistent, their autoincrement
attributes stay unset, and the commit does not write them again. Measured on the SubmitLeads
fast pass (batches of 50 new leads): the flush step from about 480-550 to 330 us of CPU per
lead, the same statements for PostgreSQL.

What the ORM would write for an object is written: the attributes set on it (a None where the
column type does not store None as a value counts as unset), the column's default where unset,
NULL for unset columns without a default, nothing for an unset autoincrement key. Objects the
mechanism does not cover (inheritance, relationships, version counters, SQL expression values,
ORM-level dataclass defaults, a missing non-autoincrement key) make the whole flush an ORM one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.sql.elements import ClauseElement


class _NotCovered(Exception):
    """An object the Core path does not write as the ORM would: flush everything by ORM."""


def flush_pending_as_inserts(s: Session) -> None:
    """Flush `s`: its pending objects with Core INSERTs, the rest (changes to persistent objects,
    deletions) with the ORM's flush, first, as the ORM updates before it inserts. Tables go in
    the metadata's dependency order (parents before children). Falls back to a plain ORM flush
    when an object is not covered or a changed persistent row refers to a new one."""
    pending = sorted((sa.inspect(obj) for obj in s.new), key=_insert_order)
    if not pending:
        s.flush()
        return
    try:
        groups = _rows_by_table(pending)
    except _NotCovered:
        s.flush()
        return
    changed = [sa.inspect(obj) for obj in (*s.dirty, *s.deleted)]
    if any(_refers_to(state.mapper, set(groups)) for state in changed):
        s.flush()  # the new rows must exist before the changed rows refer to them
        return
    for state in pending:
        s.expunge(state.object)
    s.flush()
    conn = s.connection()
    for metadata in {table.metadata for table in groups}:
        for table in metadata.sorted_tables:
            for rows in groups.get(table, ()):
                conn.execute(_insert(table, _omits_key(table, rows[0])), rows)


def _omits_key(table: sa.Table, row: dict[str, Any]) -> bool:
    auto = table.autoincrement_column
    return auto is not None and auto.key not in row


@functools.cache
def _insert(table: sa.Table, database_assigns_key: bool) -> sa.Insert:
    """A plain INSERT (psycopg pipelines the executemany), except where the database assigns
    the autoincrement key: there a RETURNING of it (not read) makes SQLAlchemy send the rows as
    one multi-row INSERT ("insertmanyvalues", as the ORM flush does), one statement for
    PostgreSQL to run instead of one per row. Not sorted by parameter order (which costs a
    sentinel and a sort): PostgreSQL assigns the keys in the order of the VALUES list."""
    if database_assigns_key and table.autoincrement_column is not None:
        return sa.insert(table).returning(table.autoincrement_column)
    return sa.insert(table)


def _insert_order(state: InstanceState[Any]) -> int:
    return state.insert_order if state.insert_order is not None else 0


def _rows_by_table(pending: Sequence[InstanceState[Any]]) -> dict[sa.Table, list[list[dict[str, Any]]]]:
    """Each table's rows in the order their objects were added, in runs of one set of columns
    (one executemany each), as the ORM groups them."""
    groups: dict[sa.Table, list[list[dict[str, Any]]]] = {}
    for state in pending:
        plan = _plan(state.mapper)
        row = plan.row(state.dict)
        runs = groups.setdefault(plan.table, [])
        if runs and runs[-1][0].keys() == row.keys():
            runs[-1].append(row)
        else:
            runs.append([row])
    return groups


# Values written as they are, without looking for a SQL expression in them.
_PLAIN = frozenset({str, int, float, bool, bytes, dict, list, datetime, date, Decimal})


@dataclass(frozen=True)
class _Column:
    attr: str  # the mapped attribute's key in the object's __dict__
    key: str  # the column's key in the INSERT's parameters
    # Whether the type stores None as a value (JSON's null): None is then written as set.
    none_is_value: bool
    # When unset: NULL in the row (no default, no server default, not the key); else left out
    # for Core's default or the database's autoincrement.
    null_if_unset: bool
    required: bool  # part of the primary key the database does not assign


@dataclass(frozen=True)
class _Plan:
    """How an object of one mapper becomes a row of its table."""

    table: sa.Table
    columns: tuple[_Column, ...]

    def row(self, values: dict[str, Any]) -> dict[str, Any]:
        """The parameters the ORM's flush would send for an object with these attributes."""
        row: dict[str, Any] = {}
        for c in self.columns:
            if c.attr in values:
                value = values[c.attr]
                if type(value) not in _PLAIN and (
                    isinstance(value, ClauseElement) or hasattr(value, "__clause_element__")
                ):
                    raise _NotCovered(c.attr)  # the ORM renders it into the statement
                if value is not None or c.none_is_value:
                    row[c.key] = value
                    continue
            # Unset (or None, which the ORM treats as unset for these types).
            if c.required:
                raise _NotCovered(c.attr)  # the ORM refuses a row without its key
            if c.null_if_unset:
                row[c.key] = None
        return row


@functools.cache
def _plan(mapper: Mapper[Any]) -> _Plan:
    table = mapper.local_table
    if (
        not isinstance(table, sa.Table)
        or len(mapper.tables) != 1
        or mapper.inherits is not None
        or mapper.relationships
        or mapper.version_id_col is not None
        or getattr(mapper, "_insert_orm_defaults", {}).get(table)
    ):
        raise _NotCovered(mapper)
    columns: list[_Column] = []
    for prop in mapper.column_attrs:
        col = prop.columns[0]
        if len(prop.columns) != 1 or not isinstance(col, sa.Column) or col.table is not table:
            raise _NotCovered(prop)
        none_is_value = bool(col.type.should_evaluate_none)
        columns.append(
            _Column(
                attr=prop.key,
                key=col.key,
                none_is_value=none_is_value,
                null_if_unset=not (col.primary_key or col.default or col.server_default or none_is_value),
                required=col.primary_key and col is not table.autoincrement_column,
            )
        )
    return _Plan(table, tuple(columns))


def _refers_to(mapper: Mapper[Any], tables: set[sa.Table]) -> bool:
    return any(fk.column.table in tables for table in mapper.tables for fk in table.foreign_keys)
