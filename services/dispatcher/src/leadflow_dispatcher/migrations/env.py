"""Alembic environment for the dispatcher service's own tables."""

from leadflow_core.migrations import run_env
from leadflow_dispatcher.models import Base

run_env(Base.metadata)
