"""Alembic environment for the enrichment service's own tables."""

from leadflow_core.migrations import run_env
from leadflow_enrichment.models import Base

run_env(Base.metadata)
