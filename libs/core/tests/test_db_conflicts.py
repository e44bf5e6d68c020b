"""Two transactions that lock two rows in opposite orders deadlock on the real PostgreSQL; the
one PostgreSQL aborts runs again and both finish. Other errors are not retried."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from leadflow_core.db import make_engine
from leadflow_core.db_conflicts import retry_conflicts


@pytest.fixture
def table(database_url: str) -> Iterator[tuple[Engine, sa.Table]]:
    engine = make_engine(database_url)
    rows = sa.Table(
        f"conflict_{uuid.uuid4().hex[:8]}",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("n", sa.Integer, nullable=False),
    )
    rows.create(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(rows), [{"id": 1, "n": 0}, {"id": 2, "n": 0}])
    yield engine, rows
    rows.drop(engine)
    engine.dispose()


def _opposite_orders(engine: Engine, rows: sa.Table, retried: bool) -> tuple[list[int], list[BaseException]]:
    both_hold_one = threading.Barrier(2, timeout=30)
    calls: list[int] = []
    errors: list[BaseException] = []

    def bump(first: int, second: int) -> None:
        calls.append(first)
        with engine.begin() as conn:
            conn.execute(sa.update(rows).where(rows.c.id == first).values(n=rows.c.n + 1))
            if len(calls) <= 2:  # only the first try of each waits: the retry runs alone
                both_hold_one.wait()
            conn.execute(sa.update(rows).where(rows.c.id == second).values(n=rows.c.n + 1))

    run = retry_conflicts()(bump) if retried else bump

    def thread(first: int, second: int) -> None:
        try:
            run(first, second)
        except BaseException as err:  # collected for the assertion
            errors.append(err)

    workers = [threading.Thread(target=thread, args=order) for order in ((1, 2), (2, 1))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    return calls, errors


def test_the_deadlocks_loser_runs_again_and_both_finish(table: tuple[Engine, sa.Table]) -> None:
    engine, rows = table
    calls, errors = _opposite_orders(engine, rows, retried=True)
    assert errors == []
    assert len(calls) == 3  # two first tries, one retry of the aborted one
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(rows.c.n))).scalar_one() == 4


def test_without_the_retry_the_loser_fails(table: tuple[Engine, sa.Table]) -> None:
    engine, rows = table
    _, errors = _opposite_orders(engine, rows, retried=False)
    assert len(errors) == 1
    assert isinstance(errors[0], DBAPIError)
    assert getattr(getattr(errors[0], "orig", None), "sqlstate", None) == "40P01"


def test_other_errors_are_not_retried(table: tuple[Engine, sa.Table]) -> None:
    engine, rows = table
    tries: list[int] = []

    @retry_conflicts()
    def duplicate() -> None:
        tries.append(1)
        with engine.begin() as conn:
            conn.execute(sa.insert(rows).values(id=1, n=0))

    with pytest.raises(DBAPIError):
        duplicate()
    assert tries == [1]
