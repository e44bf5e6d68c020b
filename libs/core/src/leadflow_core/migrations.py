"""Alembic, run programmatically: each service owns its tables and its own version table."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData

from leadflow_core.db import make_engine, normalise_url

SERVICES_WITH_SCHEMA = ("compliance", "dispatcher", "enrichment")


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", f"leadflow_{service}:migrations")
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    cfg.attributes["version_table"] = f"alembic_version_{service}"
    return cfg


def upgrade(service: str, url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, url), revision)


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's alembic env.py (online mode only: we always have a DB)."""
    from alembic import context

    cfg = context.config
    url = cfg.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=cfg.attributes.get("version_table", "alembic_version"),
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
