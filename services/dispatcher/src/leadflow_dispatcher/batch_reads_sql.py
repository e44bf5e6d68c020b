"""The reads of `batch_reads.BatchReads.load` as fixed PostgreSQL statements.

Built with SQLAlchemy constructs, these reads were ~23 % of the dispatcher's CPU under load,
almost all of it the fixed cost of each statement: building the selects with their `in_()`
and `tuple_(...).in_()` lists, their cache keys, and rendering the expanding IN parameters,
whose SQL text changes with the lists' lengths (so psycopg never prepared it either). At the
few leads per batch seen under load that fixed cost is nearly all of it. Here the lists travel
as array parameters, so each text never changes: SQLAlchemy compiles it once, and psycopg
prepares it on the server after a few runs. Measured in process (stored people, batches that
hit every read), Python CPU per `BatchReads.load`: 6.4 ms before, 3.7 ms now at 3 leads; 10.0
ms before, 5.5 ms now at 20.

An empty list matches nothing (`= ANY('{}')` is false), as the clause the builder left out
did; `load` still skips a statement whose lists are all empty. The code's own fixed sets (live
job states, ordered kinds, in-flight attempt states) are written into the text as literals, so
the planner sees them as such even in a generic prepared plan, as it saw the rendered lists.
Leads come back as `LeadRow` entities, loaded by column name from `dispatcher_leads.*`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import sqlalchemy as sa

from leadflow_dispatcher.attempts import IN_FLIGHT
from leadflow_dispatcher.models import LeadRow
from leadflow_dispatcher.person_order import ORDERED_KINDS
from leadflow_dispatcher.repository import LIVE_JOB_STATES


def sql_literals(values: Iterable[str]) -> str:
    """A constant list of the code as SQL literals (plain words only, nothing to escape); the
    worker path's fixed statements (`worker_path_sql`) use it too."""
    words = list(values)
    if not words or not all(re.fullmatch(r"[a-z_]+", w) for w in words):
        raise ValueError(f"not a list of plain words: {words!r}")
    return ", ".join(f"'{w}'" for w in words)


# Stored leads carrying a sender id of the batch: its (source, vendor lead id) pairs or its
# idempotency keys, in its tenants. The pairs' `= ANY` lists let the (tenant, source,
# vendor_lead_id) index answer; the unnest keeps only the batch's exact pairs.
NAMED_LEADS = sa.select(LeadRow).from_statement(
    sa.text(
        """
SELECT dispatcher_leads.*
  FROM dispatcher_leads
 WHERE tenant = ANY(CAST(:tenants AS text[]))
   AND ((source = ANY(CAST(:sources AS text[]))
         AND vendor_lead_id = ANY(CAST(:vendor_ids AS text[]))
         AND (source, vendor_lead_id) IN (
             SELECT * FROM unnest(CAST(:sources AS text[]), CAST(:vendor_ids AS text[]))))
        OR idempotency_key = ANY(CAST(:idempotency_keys AS text[])))
"""
    )
)

# The same for the aliases of merged submissions, each with the lead it answers with: the
# alias's ids as `alias_*` columns, then the lead's row.
ALIAS_TENANT = sa.column("alias_tenant", sa.String)
ALIAS_SOURCE = sa.column("alias_source", sa.String)
ALIAS_VENDOR_ID = sa.column("alias_vendor_lead_id", sa.String)
ALIAS_IDEMPOTENCY_KEY = sa.column("alias_idempotency_key", sa.String)
NAMED_ALIASES = sa.select(
    ALIAS_TENANT, ALIAS_SOURCE, ALIAS_VENDOR_ID, ALIAS_IDEMPOTENCY_KEY, LeadRow
).from_statement(
    sa.text(
        """
SELECT a.tenant AS alias_tenant, a.source AS alias_source,
       a.vendor_lead_id AS alias_vendor_lead_id, a.idempotency_key AS alias_idempotency_key,
       dispatcher_leads.*
  FROM dispatcher_lead_aliases AS a
  JOIN dispatcher_leads ON dispatcher_leads.id = a.lead_id
 WHERE a.tenant = ANY(CAST(:tenants AS text[]))
   AND ((a.source = ANY(CAST(:sources AS text[]))
         AND a.vendor_lead_id = ANY(CAST(:vendor_ids AS text[]))
         AND (a.source, a.vendor_lead_id) IN (
             SELECT * FROM unnest(CAST(:sources AS text[]), CAST(:vendor_ids AS text[]))))
        OR a.idempotency_key = ANY(CAST(:idempotency_keys AS text[])))
"""
    )
)

# The leads of the batch's people: by phone or email key, in its tenants.
PEOPLE_LEADS = sa.select(LeadRow).from_statement(
    sa.text(
        """
SELECT dispatcher_leads.*
  FROM dispatcher_leads
 WHERE tenant = ANY(CAST(:tenants AS text[]))
   AND (person_phone = ANY(CAST(:phones AS text[])) OR person_email = ANY(CAST(:emails AS text[])))
"""
    )
)

# Row locks on the leads a merge may change (as `_merge_target`'s FOR UPDATE), their rows
# read again over what the session holds.
LOCK_MERGEABLE = (
    sa.select(LeadRow)
    .from_statement(
        sa.text(
            """
SELECT dispatcher_leads.*
  FROM dispatcher_leads
 WHERE id = ANY(CAST(:ids AS text[]))
   FOR UPDATE
"""
        )
    )
    .execution_options(populate_existing=True)
)

_CONSTANTS = {
    "live": sql_literals(LIVE_JOB_STATES),
    "in_flight": sql_literals(IN_FLIGHT),
    "ordered": sql_literals(ORDERED_KINDS),
}

# The people's leads with a dial job still to run.
_LIVE_DIALS = """
SELECT lead_id
  FROM dispatcher_jobs
 WHERE tenant = ANY(CAST(:tenants AS text[])) AND lead_id = ANY(CAST(:lead_ids AS text[]))
   AND kind = 'dial' AND state IN ({live})
"""
LIVE_DIALS = sa.text(_LIVE_DIALS.format(**_CONSTANTS))

# The people's dial attempts in flight or placed since `:since`: (lead id, state, dialed at).
_RECENT_ATTEMPTS = """
SELECT lead_id, state, dialed_at
  FROM dispatcher_dial_attempts
 WHERE tenant = ANY(CAST(:tenants AS text[])) AND lead_id = ANY(CAST(:lead_ids AS text[]))
   AND (state IN ({in_flight}) OR dialed_at >= :since)
"""
RECENT_ATTEMPTS = sa.text(_RECENT_ATTEMPTS.format(**_CONSTANTS))

# The last place taken in each (person, campaign) order of the batch: (tenant, key, max seq).
LAST_ORDER_SEQ = sa.text(
    """
SELECT tenant, order_key, max(order_seq)
  FROM dispatcher_leads
 WHERE tenant = ANY(CAST(:tenants AS text[])) AND order_key = ANY(CAST(:order_keys AS text[]))
 GROUP BY tenant, order_key
"""
)

# The kinds of ordered work still to run in those orders: distinct (tenant, key, kind).
_HELD_KINDS = """
SELECT DISTINCT tenant, order_key, kind
  FROM dispatcher_jobs
 WHERE tenant = ANY(CAST(:tenants AS text[])) AND order_key = ANY(CAST(:order_keys AS text[]))
   AND kind IN ({ordered}) AND state IN ({live})
"""
HELD_KINDS = sa.text(_HELD_KINDS.format(**_CONSTANTS))
