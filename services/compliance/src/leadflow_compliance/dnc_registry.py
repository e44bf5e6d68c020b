"""Loading the National DNC Registry from its bulk download format, streamed.

The file is lines of area code and number ("201,5550123", or a 10-digit "2015550123"). A full
file loads into the idle one of two slot tables and then flips the pointer evaluation reads,
so evaluation never waits for an import and never sees half a registry. On PostgreSQL rows go in
with COPY through a temporary table; memory stays flat whatever the file size.

A change file (not `replace`) is applied to the live slot in one transaction (readers keep
seeing the previous state until it commits). Its lines may end in an action column: `,A` (or
none) adds the number, `,D` deletes it ("201,5550123,D"). A number both added and deleted in one
change file stays listed, the safe side. In a full file a `D` line is counted as rejected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

from leadflow_core.db import is_sqlite

SLOTS = {"a": "compliance_dnc_registry_a", "b": "compliance_dnc_registry_b"}


@dataclass
class ImportResult:
    # Numbers in the live registry after the import.
    numbers_loaded: int
    lines_rejected: int
    version: str
    # Numbers a change file's `D` lines removed.
    numbers_removed: int = 0


# What a line may carry besides its digits; the same set as PostgreSQL's `_NOISE` below, so
# both paths accept and reject the same lines.
_NOISE_BYTES = b'" ,-\r\t'


def parse_entry(line: bytes) -> tuple[int, bool] | None:
    """One registry line to (10-digit number, is a deletion), or None when it is not one."""
    digits = line.translate(None, _NOISE_BYTES).strip()
    delete = digits[-1:] in (b"D", b"d")
    if delete or digits[-1:] in (b"A", b"a"):
        digits = digits[:-1]
    number = parse_line(digits)
    return None if number is None else (number, delete)


def parse_line(line: bytes) -> int | None:
    """One registry line (no action column) to its 10-digit number, or None when it is not one."""
    digits = line.translate(None, _NOISE_BYTES).strip()
    if len(digits) == 11 and digits.startswith(b"1"):
        digits = digits[1:]
    if len(digits) != 10 or not digits.isdigit() or digits[0] in b"01":
        return None
    return int(digits)


class _Parser:
    """Splits streamed chunks into lines (a line may straddle two chunks) and parses them."""

    def __init__(self) -> None:
        self.rest = b""
        self.rejected = 0
        self.digest = hashlib.sha256()

    def feed(self, chunk: bytes) -> list[tuple[int, bool]]:
        self.digest.update(chunk)
        lines = (self.rest + chunk).split(b"\n")
        self.rest = lines.pop()
        return self._parse(lines)

    def finish(self) -> list[tuple[int, bool]]:
        lines, self.rest = [self.rest], b""
        return self._parse(lines)

    def _parse(self, lines: list[bytes]) -> list[tuple[int, bool]]:
        out: list[tuple[int, bool]] = []
        for line in lines:
            if not line.strip():
                continue
            entry = parse_entry(line)
            if entry is None:
                self.rejected += 1
            else:
                out.append(entry)
        return out

    @property
    def version(self) -> str:
        return "sha256:" + self.digest.hexdigest()[:16]


def load(
    engine: Engine, chunks: Iterable[bytes], replace: bool, now: datetime, batch: int = 50_000
) -> ImportResult:
    if is_sqlite(str(engine.url)):
        return _load_sqlite(engine, chunks, replace, now, batch)
    return _load_postgres(engine, chunks, replace, now)


def _slots(conn: object, replace: bool) -> tuple[str, str]:
    """(slot to write, slot to make active)."""
    active = conn.execute(  # type: ignore[attr-defined]
        text("SELECT active_slot FROM compliance_dnc_registry_state WHERE id = 1")
    ).scalar_one()
    if not replace:
        return active, active
    idle = "b" if active == "a" else "a"
    return idle, idle


def _flip(conn: object, slot: str, version: str, now: datetime) -> int:
    count = conn.execute(text(f"SELECT count(*) FROM {SLOTS[slot]}")).scalar_one()  # type: ignore[attr-defined]  # noqa: S608
    conn.execute(  # type: ignore[attr-defined]
        text(
            "UPDATE compliance_dnc_registry_state SET active_slot = :slot, version = :version,"
            " loaded_at = :now, numbers = :count WHERE id = 1"
        ),
        {"slot": slot, "version": version, "now": now, "count": count},
    )
    return int(count)


# Raw lines go into one text column (the \x01 delimiter and \x02 quote never occur in the
# file), and PostgreSQL does the parsing: no per-line Python work, any malformed line is
# counted rather than failing the COPY.
_COPY_RAW = "COPY dnc_raw (line) FROM STDIN WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"
# Characters a registry line may carry besides its digits (quotes, separators, CR, tab).
_NOISE = "E'\" ,-\\r\\t'"
# Each distinct (candidate number, deletion) once, with how many lines carried it (duplicates
# are common); a trailing A / D is the change file's action column.
_GROUP = (
    "CREATE TEMP TABLE dnc_grouped ON COMMIT DROP AS"  # noqa: S608 - constants only
    " SELECT CASE WHEN length(n) = 11 AND left(n, 1) = '1' THEN substr(n, 2) ELSE n END AS digits,"
    " del, count(*) AS lines"
    " FROM (SELECT CASE WHEN right(d, 1) IN ('A', 'a', 'D', 'd') THEN left(d, -1) ELSE d END AS n,"
    " right(d, 1) IN ('D', 'd') AS del"
    f" FROM (SELECT translate(line, {_NOISE}, '') AS d FROM dnc_raw WHERE btrim(line) <> '') AS x) AS y"
    " GROUP BY 1, 2"
)
# Ten digits, not starting with 0 or 1 (a NANP area code); cheaper than a regular expression.
_VALID = "length(digits) = 10 AND translate(digits, '0123456789', '') = '' AND left(digits, 1) >= '2'"


def _load_postgres(engine: Engine, chunks: Iterable[bytes], replace: bool, now: datetime) -> ImportResult:
    digest = hashlib.sha256()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        # One import at a time; evaluation reads only the live slot and never waits for this.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('compliance_dnc_registry_import'))")
        cur.execute("SELECT active_slot FROM compliance_dnc_registry_state WHERE id = 1")
        active = cur.fetchone()[0]  # type: ignore[index]
        target = ("b" if active == "a" else "a") if replace else active
        table = SLOTS[target]
        # Room for the grouping in memory rather than in temporary files.
        cur.execute("SET LOCAL work_mem = '256MB'")
        cur.execute("CREATE TEMP TABLE dnc_raw (line text) ON COMMIT DROP")
        with cur.copy(_COPY_RAW) as copy:
            for chunk in chunks:
                digest.update(chunk)
                # COPY refuses a bare carriage return, and CRLF files are common.
                copy.write(chunk.replace(b"\r", b""))
        cur.execute(_GROUP)
        # A full file has no deletions to apply: its D lines are rejected.
        bad = f"NOT ({_VALID}) OR del" if replace else f"NOT ({_VALID})"
        cur.execute(f"SELECT coalesce(sum(lines), 0) FROM dnc_grouped WHERE {bad}")  # noqa: S608
        rejected = cur.fetchone()[0]  # type: ignore[index]
        valid = f"SELECT digits::bigint FROM dnc_grouped WHERE NOT del AND {_VALID}"  # noqa: S608
        removed = 0
        if replace:
            cur.execute(f"TRUNCATE {table}")
            # An index built once after the bulk load is much faster than per-row maintenance.
            cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_pkey")
            cur.execute(f"INSERT INTO {table} (number) {valid}")
            cur.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (number)")
        else:
            # Deletions first, so a number also added in this file stays listed.
            cur.execute(
                f"DELETE FROM {table} AS r USING dnc_grouped AS g"  # noqa: S608 - constants only
                f" WHERE g.del AND {_VALID} AND r.number = g.digits::bigint"
                f" AND NOT EXISTS (SELECT 1 FROM dnc_grouped AS a WHERE NOT a.del AND a.digits = g.digits)"
            )
            removed = cur.rowcount
            cur.execute(f"INSERT INTO {table} (number) {valid} ON CONFLICT DO NOTHING")
        cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608
        count = cur.fetchone()[0]  # type: ignore[index]
        version = "sha256:" + digest.hexdigest()[:16]
        cur.execute(
            "UPDATE compliance_dnc_registry_state SET active_slot = %s, version = %s, loaded_at = %s,"
            " numbers = %s WHERE id = 1",
            (target, version, now, count),
        )
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
    return ImportResult(int(count), int(rejected), version, int(removed))


def _batches(parser: _Parser, chunks: Iterable[bytes], size: int) -> Iterator[list[tuple[int, bool]]]:
    pending: list[tuple[int, bool]] = []
    for chunk in chunks:
        pending.extend(parser.feed(chunk))
        if len(pending) >= size:
            yield pending
            pending = []
    pending.extend(parser.finish())
    if pending:
        yield pending


def _load_sqlite(
    engine: Engine, chunks: Iterable[bytes], replace: bool, now: datetime, batch: int
) -> ImportResult:
    parser = _Parser()
    rejected_deletes = 0
    # Deletions wait for the end of the file, so a number also added in it stays listed.
    deletes: set[int] = set()
    added: set[int] = set()
    with engine.begin() as conn:
        target, _ = _slots(conn, replace)
        table = SLOTS[target]
        if replace:
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608
        insert = text(f"INSERT OR IGNORE INTO {table} (number) VALUES (:n)")  # noqa: S608
        for entries in _batches(parser, chunks, batch):
            adds = [n for n, delete in entries if not delete]
            if replace:
                rejected_deletes += len(entries) - len(adds)
            else:
                deletes.update(n for n, delete in entries if delete)
                added.update(adds)
            if adds:
                conn.execute(insert, [{"n": n} for n in adds])
        removed = 0
        remove = text(f"DELETE FROM {table} WHERE number = :n")  # noqa: S608
        for n in deletes - added:
            removed += conn.execute(remove, {"n": n}).rowcount
        count = _flip(conn, target, parser.version, now)
    return ImportResult(count, parser.rejected + rejected_deletes, parser.version, removed)
