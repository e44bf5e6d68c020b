"""Loading the National DNC Registry from its bulk download format, streamed.

The file is lines of area code and number ("201,5550123", or a 10-digit "2015550123"). A full
file loads into the idle one of two slot tables and then flips the pointer evaluation reads,
so evaluation never waits for an import and never sees half a registry. A change file (not
`replace`) is added to the live slot. On PostgreSQL rows go in with COPY through a temporary
table; memory stays flat whatever the file size.
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
    numbers_loaded: int
    lines_rejected: int
    version: str


def parse_line(line: bytes) -> int | None:
    """One registry line to its 10-digit number, or None when it is not one."""
    fields = line.replace(b'"', b"").replace(b" ", b"").strip().split(b",")
    digits = b"".join(fields[:2]) if len(fields) >= 2 else fields[0]
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

    def feed(self, chunk: bytes) -> list[int]:
        self.digest.update(chunk)
        lines = (self.rest + chunk).split(b"\n")
        self.rest = lines.pop()
        return self._parse(lines)

    def finish(self) -> list[int]:
        lines, self.rest = [self.rest], b""
        return self._parse(lines)

    def _parse(self, lines: list[bytes]) -> list[int]:
        out: list[int] = []
        for line in lines:
            if not line.strip():
                continue
            number = parse_line(line)
            if number is None:
                self.rejected += 1
            else:
                out.append(number)
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
# Each distinct candidate number once, with how many lines carried it (duplicates are common).
_GROUP = (
    "CREATE TEMP TABLE dnc_grouped ON COMMIT DROP AS"  # noqa: S608 - constants only
    " SELECT CASE WHEN length(d) = 11 AND left(d, 1) = '1' THEN substr(d, 2) ELSE d END AS digits,"
    " count(*) AS lines"
    f" FROM (SELECT translate(line, {_NOISE}, '') AS d FROM dnc_raw WHERE btrim(line) <> '') AS x"
    " GROUP BY 1"
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
                copy.write(chunk)
        cur.execute(_GROUP)
        cur.execute(f"SELECT coalesce(sum(lines), 0) FROM dnc_grouped WHERE NOT ({_VALID})")  # noqa: S608
        rejected = cur.fetchone()[0]  # type: ignore[index]
        valid = f"SELECT digits::bigint FROM dnc_grouped WHERE {_VALID}"  # noqa: S608
        if replace:
            cur.execute(f"TRUNCATE {table}")
            # An index built once after the bulk load is much faster than per-row maintenance.
            cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_pkey")
            cur.execute(f"INSERT INTO {table} (number) {valid}")
            cur.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (number)")
        else:
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
    return ImportResult(int(count), int(rejected), version)


def _batches(parser: _Parser, chunks: Iterable[bytes], size: int) -> Iterator[list[int]]:
    pending: list[int] = []
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
    with engine.begin() as conn:
        target, _ = _slots(conn, replace)
        table = SLOTS[target]
        if replace:
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608
        insert = text(f"INSERT OR IGNORE INTO {table} (number) VALUES (:n)")  # noqa: S608
        for numbers in _batches(parser, chunks, batch):
            conn.execute(insert, [{"n": n} for n in numbers])
        count = _flip(conn, target, parser.version, now)
    return ImportResult(count, parser.rejected, parser.version)
