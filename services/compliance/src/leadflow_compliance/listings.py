"""Read-only listings for operators: a tenant's do-not-call entries (hashes and dates only: a
number is never stored in clear). API keys are listed by api_key_rpcs."""

from __future__ import annotations

import grpc
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from leadflow.v1 import compliance_pb2, tenant_pb2
from leadflow_compliance.models import DncRow
from leadflow_compliance.repository import Repository
from leadflow_core.timestamps import to_proto


def list_dnc(
    sessions: sessionmaker[Session], tenant: str, limit: int
) -> compliance_pb2.ListDoNotCallResponse:
    with sessions() as s:
        total = s.scalar(sa.select(sa.func.count()).select_from(DncRow).where(DncRow.tenant == tenant)) or 0
        rows = s.scalars(
            sa.select(DncRow)
            .where(DncRow.tenant == tenant)
            .order_by(DncRow.added_at.desc())
            .limit(limit or 100)
        ).all()
        entries = []
        for row in rows:
            entry = compliance_pb2.DoNotCallEntry(
                subject_hash=row.subject_hash, reason=row.reason, actor=row.actor
            )
            entry.added_at.CopyFrom(to_proto(row.added_at))
            entries.append(entry)
    return compliance_pb2.ListDoNotCallResponse(entries=entries, total=int(total))


class DncListingRpcs:
    """Mixed into ComplianceServicer, which provides `repo` and `_tenant`."""

    repo: Repository

    def _tenant(self, context: grpc.ServicerContext, name: str, field: str = "tenant") -> tenant_pb2.Tenant:
        raise NotImplementedError  # the servicer this is mixed into provides it

    def ListDoNotCall(
        self, request: compliance_pb2.ListDoNotCallRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.ListDoNotCallResponse:
        tenant = self._tenant(context, request.tenant)
        return list_dnc(self.repo.sessions, tenant.name, request.limit)
