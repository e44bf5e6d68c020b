"""Alembic environment for the compliance service's own tables."""

from leadflow_core.migrations import run_env
from leadflow_compliance.models import Base

run_env(Base.metadata)
