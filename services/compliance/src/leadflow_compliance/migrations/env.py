"""Alembic environment for the compliance service's own tables."""

from leadflow_compliance.models import Base
from leadflow_core.migrations import run_env

run_env(Base.metadata)
