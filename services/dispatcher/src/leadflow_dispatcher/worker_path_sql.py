"""The worker path's statements (`worker_reads`, `dial_batches`) as fixed PostgreSQL texts.

Under a backlog drain the dispatcher spent 16.5 ms of Python CPU per lead, most of it in
RecordEvents, GetLeads, CompleteDials and StartDials, and nearly all of that was SQLAlchemy's
fixed cost per statement: building the selects and updates with their `in_()` and
`tuple_(...).in_()` lists, their cache keys, rendering the expanding IN parameters (whose SQL
text changes with the lists' lengths, so psycopg never prepared it either), the ORM's bulk
UPDATE bookkeeping and entity loading. Batches are a few items each, so that fixed cost is
nearly all of it. Here the lists travel as array parameters (pairs and triples through
`unnest`), so each text never changes: SQLAlchemy compiles it once, and psycopg prepares it on
the server after a few runs. The same approach as `batch_reads_sql`. Measured in process, Python
CPU per call went down 1.4x to 5x (batches of 3 and 20; the figures are in the stores'
docstrings), `mark_dialing` more (one statement per batch instead of one per claim).

Pairs and triples are matched through `unnest` alone, `(tenant, lead_id, kind) IN (SELECT * FROM
unnest(...))`, which the planner can look up item by item on the table's unique key. An extra
`tenant = ANY(:tenants) AND lead_id = ANY(:lead_ids)` (the tenant repeated per item) made it
price that index at items x items descents: at 24 items it scanned the jobs table instead
(6,000 rows filtered per call in a 1,500-lead drain; the UPDATE's time there 630 -> 223 ms). On
a table of a few thousand rows PostgreSQL may still judge a scan cheaper; it stops doing so as
the table grows.

The filters, locks and ON CONFLICT targets are those of the portable statements the stores keep
for SQLite. An empty list matches nothing (`= ANY('{}')` is false), as an empty `in_()` did.
Rows come back as plain rows (attribute access by column name), except where the caller
changes an entity (`CALL_STATUSES`, `ATTEMPTS_BY_ID`).
"""

from __future__ import annotations

import sqlalchemy as sa

from leadflow_dispatcher.batch_reads_sql import sql_literals
from leadflow_dispatcher.models import CallStatusRow, DialAttemptRow
from leadflow_dispatcher.repository import LIVE_JOB_STATES

# ---- worker_reads ---------------------------------------------------------------------------

# The batch's leads, with what GetLeads answers and `_superseded_by` compares.
LEADS_BY_ID = sa.text(
    """
SELECT id, tenant, lead_pb, decision_pb, dial_state, dial_at, enrichment, person_phone,
       person_email, version_at, joined_lead_id, request_id
  FROM dispatcher_leads
 WHERE id = ANY(CAST(:ids AS text[]))
"""
)

# Their finished jobs: (lead id, kind).
DONE_JOBS = sa.text(
    """
SELECT lead_id, kind
  FROM dispatcher_jobs
 WHERE tenant = ANY(CAST(:tenants AS text[])) AND lead_id = ANY(CAST(:lead_ids AS text[]))
   AND state = 'done'
"""
)

# The leads of the same people, by phone or email key, in the batch's tenants.
PEOPLE = sa.text(
    """
SELECT id, tenant, person_phone, person_email, version_at
  FROM dispatcher_leads
 WHERE tenant = ANY(CAST(:tenants AS text[]))
   AND (person_phone = ANY(CAST(:phones AS text[])) OR person_email = ANY(CAST(:emails AS text[])))
"""
)

# The owner (tenant) of each lead id.
LEAD_OWNERS = sa.text(
    """
SELECT id, tenant
  FROM dispatcher_leads
 WHERE id = ANY(CAST(:ids AS text[]))
"""
)

# Timeline rows in the given order, skipping (tenant, dedupe key) recorded before; the keys
# inserted. `detail` travels as JSON text (serialised as the JSON column's default, json.dumps).
INSERT_EVENTS = sa.text(
    """
INSERT INTO dispatcher_events (tenant, lead_id, kind, detail, request_id, dedupe_key, at)
SELECT u.tenant, u.lead_id, u.kind, CAST(u.detail AS json), u.request_id, u.dedupe_key, u.at
  FROM unnest(CAST(:tenants AS text[]), CAST(:lead_ids AS text[]), CAST(:kinds AS text[]),
              CAST(:details AS text[]), CAST(:request_ids AS text[]), CAST(:dedupe_keys AS text[]),
              CAST(:ats AS timestamptz[]))
       WITH ORDINALITY AS u(tenant, lead_id, kind, detail, request_id, dedupe_key, at, n)
 ORDER BY u.n
    ON CONFLICT (tenant, dedupe_key) DO NOTHING
RETURNING tenant, dedupe_key
"""
)

_LIVE_OR_DEAD = sql_literals((*LIVE_JOB_STATES, "dead"))

# The jobs finished by the batch's reports: (tenant, lead id, kind) triples, live or dead.
_FINISH_JOBS = """
UPDATE dispatcher_jobs
   SET state = 'done', updated_at = :now
 WHERE (tenant, lead_id, kind) IN (
       SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:lead_ids AS text[]),
                            CAST(:kinds AS text[])))
   AND state IN ({live_or_dead})
"""
FINISH_JOBS = sa.text(_FINISH_JOBS.format(live_or_dead=_LIVE_OR_DEAD))

# The leads' enrichments (JSON text, as the JSON column writes it), one per lead: one statement
# for the batch where the portable path runs one per report.
SET_ENRICHMENTS = sa.text(
    """
UPDATE dispatcher_leads AS l
   SET enrichment = CAST(u.enrichment AS json)
  FROM unnest(CAST(:ids AS text[]), CAST(:enrichments AS text[])) AS u(id, enrichment)
 WHERE l.id = u.id
"""
)

# A retrying worker still holds its queued job: its lease reaches past the next attempt.
EXTEND_LEASE = sa.text(
    """
UPDATE dispatcher_jobs
   SET lease_until = :lease_until, updated_at = :now
 WHERE tenant = :tenant AND lead_id = :lead_id AND kind = :kind AND attempt = :attempt
   AND state = 'queued'
"""
)

# ---- dial_batches ---------------------------------------------------------------------------

# The claims' leads: (id, tenant, lead_pb).
CLAIM_LEADS = sa.text(
    """
SELECT id, tenant, lead_pb
  FROM dispatcher_leads
 WHERE id = ANY(CAST(:ids AS text[]))
"""
)

# The claims' dial jobs: (tenant, lead id, attempt, state).
DIAL_JOBS = sa.text(
    """
SELECT tenant, lead_id, attempt, state
  FROM dispatcher_jobs
 WHERE kind = 'dial'
   AND (tenant, lead_id, attempt) IN (
       SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:lead_ids AS text[]),
                            CAST(:attempts AS integer[])))
"""
)

# The claims' attempts, as far as a claim reads them.
CLAIM_ATTEMPTS = sa.text(
    """
SELECT id, tenant, lead_id, attempt, state, tries, claimed_at, dialing_at, reservation_id
  FROM dispatcher_dial_attempts
 WHERE (tenant, lead_id, attempt) IN (
       SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:lead_ids AS text[]),
                            CAST(:attempts AS integer[])))
"""
)

# Compare-and-set on an attempt's state and claim time: one claimant wins.
RESUME_ATTEMPT = sa.text(
    """
UPDATE dispatcher_dial_attempts
   SET state = :to_state, claimed_at = :now, tries = :tries, error = ''
 WHERE id = :id AND state = :from_state AND claimed_at = :claimed_at
"""
)

# New attempts, "claimed", skipping one a concurrent claimant inserted first; the ids inserted.
# The columns the model fills by default are written as those defaults.
INSERT_ATTEMPTS = sa.text(
    """
INSERT INTO dispatcher_dial_attempts (
       id, tenant, lead_id, attempt, state, tries, provider, provider_call_id, reservation_id,
       call_status, duration_seconds, price_usd, error, claimed_at, dialing_at, dialed_at,
       ended_at)
SELECT u.id, u.tenant, u.lead_id, u.attempt, 'claimed', 1, '', NULL, '', '', 0, '', '', :now,
       NULL, NULL, NULL
  FROM unnest(CAST(:ids AS text[]), CAST(:tenants AS text[]), CAST(:lead_ids AS text[]),
              CAST(:attempts AS integer[]))
       WITH ORDINALITY AS u(id, tenant, lead_id, attempt, n)
 ORDER BY u.n
    ON CONFLICT (tenant, lead_id, attempt) DO NOTHING
RETURNING id
"""
)

# The leads' dial state.
SET_DIAL_STATE = sa.text(
    "UPDATE dispatcher_leads SET dial_state = :dial_state WHERE id = ANY(CAST(:ids AS text[]))"
)

# Claims the gate let through: "dialing" with their reservation; the ids so marked. One
# (tenant, id) appears once (the caller keeps the first).
MARK_DIALING = sa.text(
    """
UPDATE dispatcher_dial_attempts AS a
   SET state = 'dialing', reservation_id = u.reservation_id, dialing_at = :now, claimed_at = :now
  FROM unnest(CAST(:tenants AS text[]), CAST(:ids AS text[]), CAST(:reservation_ids AS text[]))
       AS u(tenant, id, reservation_id)
 WHERE a.tenant = u.tenant AND a.id = u.id AND a.state = 'claimed'
RETURNING a.id
"""
)

# The reports' attempts, as entities (a callback that outran its report changes one).
ATTEMPTS_BY_ID = sa.select(DialAttemptRow).from_statement(
    sa.text(
        """
SELECT dispatcher_dial_attempts.*
  FROM dispatcher_dial_attempts
 WHERE id = ANY(CAST(:ids AS text[]))
"""
    )
)

# Placed calls: each attempt (once) "dialed" with its provider, call id and reservation.
PLACE_ATTEMPTS = sa.text(
    """
UPDATE dispatcher_dial_attempts AS a
   SET provider = u.provider, reservation_id = u.reservation_id, state = 'dialed',
       provider_call_id = u.call_id, dialed_at = :now, error = ''
  FROM unnest(CAST(:ids AS text[]), CAST(:providers AS text[]),
              CAST(:reservation_ids AS text[]), CAST(:call_ids AS text[]))
       AS u(id, provider, reservation_id, call_id)
 WHERE a.id = u.id
"""
)

# The placed attempts' dial jobs: done.
FINISH_DIAL_JOBS = sa.text(
    """
UPDATE dispatcher_jobs
   SET state = 'done', updated_at = :now
 WHERE kind = 'dial'
   AND (tenant, lead_id, attempt) IN (
       SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:lead_ids AS text[]),
                            CAST(:attempts AS integer[])))
"""
)

# Callbacks of these calls not applied yet, in arrival order, as entities.
EARLY_STATUSES = sa.select(CallStatusRow).from_statement(
    sa.text(
        """
SELECT dispatcher_call_statuses.*
  FROM dispatcher_call_statuses
 WHERE (tenant, provider_call_id) IN (
       SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:call_ids AS text[])))
   AND NOT applied
 ORDER BY id
"""
    )
)
