"""The enrichment service's tables: the `Base` every enrichment model registers on.

The workers themselves keep no state (the dispatcher owns leads and jobs). The local providers
keep theirs in `providers/local_crm_models.py` (the providers engineer's module, importing this
`Base`); add new provider tables in such a module of their own, import it in
`migrations/env.py`, and add an Alembic revision under `migrations/versions/`.
"""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """The workers' own tables (the local CRM's and the dial simulator's)."""
