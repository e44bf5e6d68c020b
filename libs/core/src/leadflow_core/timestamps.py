"""Conversions between aware UTC datetimes and protobuf Timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from leadflow_core import clock


def utcnow() -> datetime:
    """The service clock (see leadflow_core.clock): UTC now, shifted only in drills and tests."""
    return clock.now()


def to_proto(dt: datetime | None) -> Timestamp:
    ts = Timestamp()
    if dt is not None:
        ts.FromDatetime(as_utc(dt))
    return ts


def from_proto(ts: Timestamp | None) -> datetime | None:
    """None for an unset Timestamp (0 seconds, 0 nanos)."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=UTC)


def as_utc(dt: datetime) -> datetime:
    """Naive datetimes (SQLite returns them) are taken as UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
