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
def table(database_url: str) -> Iterator[tuple[Engine, str]]:
    engine = make_engine(database_url)
    name = f"conflict_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (id int PRIMARY KEY, n int NOT NULL)"))
        conn.execute(sa.text(f"INSERT INTO {name} VALUES (1, 0), (2, 0)"))
    yield engine, name
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {name}"))
    engine.dispose()


def _opposite_orders(engine: Engine, name: str, retried: bool) -> tuple[list[int], list[BaseException]]:
    both_hold_one = threading.Barrier(2, timeout=30)
    calls: list[int] = []
    errors: list[BaseException] = []

    def bump(first: int, second: int) -> None:
        calls.append(first)
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {name} SET n = n + 1 WHERE id = :id"), {"id": first})
            if len(calls) <= 2:  # only the first try of each waits: the retry runs alone
                both_hold_one.wait()
            conn.execute(sa.text(f"UPDATE {name} SET n = n + 1 WHERE id = :id"), {"id": second})

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


def test_the_deadlocks_loser_runs_again_and_both_finish(table: tuple[Engine, str]) -> None:
    engine, name = table
    calls, errors = _opposite_orders(engine, name, retried=True)
    assert errors == []
    assert len(calls) == 3  # two first tries, one retry of the aborted one
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT sum(n) FROM {name}")).scalar_one() == 4


def test_without_the_retry_the_loser_fails(table: tuple[Engine, str]) -> None:
    engine, name = table
    calls, errors = _opposite_orders(engine, name, retried=False)
    assert len(errors) == 1 and isinstance(errors[0], DBAPIError)
    assert getattr(getattr(errors[0], "orig", None), "sqlstate", None) == "40P01"


def test_other_errors_are_not_retried(table: tuple[Engine, str]) -> None:
    engine, name = table
    tries: list[int] = []

    @retry_conflicts()
    def duplicate() -> None:
        tries.append(1)
        with engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {name} VALUES (1, 0)"))

    with pytest.raises(DBAPIError):
        duplicate()
    assert tries == [1]
