"""`make run` from two checkouts against one Redis: each gets its own key prefix."""

from __future__ import annotations

from pathlib import Path

from leadflow_cli.commands.dev import checkout_redis_prefix


def test_each_checkout_has_its_own_prefix(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert checkout_redis_prefix("", a) != checkout_redis_prefix("", b)
    assert checkout_redis_prefix("", a) == checkout_redis_prefix("", a)
    assert checkout_redis_prefix("", a).startswith("dev-")


def test_an_explicit_prefix_wins(tmp_path: Path) -> None:
    assert checkout_redis_prefix("mine:", tmp_path) == "mine:"
