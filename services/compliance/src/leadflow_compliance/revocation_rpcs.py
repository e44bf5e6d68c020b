"""The revocation RPCs of ComplianceService: replies and dispositions in, revocations out.

Every signal is audited with its evidence (channel, message id, the text or disposition code —
phone numbers and emails in the text masked in the audit copy; the revocation row keeps it whole
as the evidence of record). Logs carry neither numbers, emails nor the text.
"""

from __future__ import annotations

import re
from datetime import timedelta

import grpc

from leadflow.v1 import compliance_pb2, tenant_pb2
from leadflow_compliance.decisions import Decider, email_subject_value
from leadflow_compliance.opt_out import Match, match_disposition, match_reply
from leadflow_compliance.phone import InvalidPhone, analyse
from leadflow_compliance.repository import Repository, StoredRevocation
from leadflow_core import grpc_errors
from leadflow_core.grpc_authz import audit_actor
from leadflow_core.logs import get_logger
from leadflow_core.pii import scrub
from leadflow_core.timestamps import from_proto, to_proto, utcnow

log = get_logger("leadflow.compliance.revocation")

CHANNELS = ("sms", "email", "call_disposition")
# 47 CFR 64.1200(a)(12): one confirmation text, within five minutes of the revocation.
CONFIRMATION_WINDOW = timedelta(minutes=5)
MAX_TEXT = 10_000
MAX_ID = 200
REPLY_PREFIX = re.compile(r"^(?:\s*(?:re|fw|fwd|aw|sv)\s*:\s*)+", re.IGNORECASE | re.ASCII)


def scope_of(tenant: tenant_pb2.Tenant, campaign: str) -> str:
    """The campaign a revocation is limited to, or "" for every campaign (the default, and always
    when the campaign is unknown)."""
    if tenant.policy.revocation_scope == "campaign" and campaign:
        return campaign
    return ""


def _match(request: compliance_pb2.RevocationSignalRequest) -> Match:
    if request.channel == "call_disposition":
        return match_disposition(request.text)
    # "Re: Unsubscribe" is the subject "Unsubscribe": reply prefixes are not the person's words.
    subject = REPLY_PREFIX.sub("", request.subject)
    return match_reply(request.text) or match_reply(subject)


class RevocationRpcs:
    """Mixed into ComplianceServicer, which provides these attributes and helpers."""

    repo: Repository
    decider: Decider

    def _tenant(self, context: grpc.ServicerContext, name: str, field: str = "tenant") -> tenant_pb2.Tenant:
        raise NotImplementedError

    def RecordRevocationSignal(
        self, request: compliance_pb2.RevocationSignalRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.RevocationSignalResponse:
        tenant = self._tenant(context, request.tenant)
        if request.channel not in CHANNELS:
            grpc_errors.invalid_argument(context, "channel", f"must be one of {list(CHANNELS)}")
        if len(request.text) > MAX_TEXT or len(request.subject) > MAX_TEXT:
            grpc_errors.invalid_argument(context, "text", f"at most {MAX_TEXT} characters")
        if len(request.message_id) > MAX_ID or len(request.campaign) > MAX_ID:
            field = "message_id" if len(request.message_id) > MAX_ID else "campaign"
            grpc_errors.invalid_argument(context, field, f"at most {MAX_ID} characters")
        subjects: list[str] = []
        if request.phone_e164:
            try:
                e164 = analyse(request.phone_e164, tenant.policy.default_region or "US").e164
            except InvalidPhone as err:
                grpc_errors.invalid_argument(context, "phone_e164", str(err))
            subjects.append(self.decider.subject(e164))
        email = request.email.strip().lower()
        if email:
            if "@" not in email or len(email) > 254:
                grpc_errors.invalid_argument(context, "email", "not an email address")
            subjects.append(self.decider.subject(email_subject_value(email)))
        if not subjects:
            grpc_errors.invalid_argument(context, "phone_e164", "a phone number or an email is required")
        matched = _match(request)
        now = utcnow()
        received = from_proto(request.received_at) or now
        campaign = scope_of(tenant, request.campaign.strip())
        scope = f"campaign:{campaign}" if campaign else "all_campaigns"
        actor = audit_actor(request.actor or request.channel)
        evidence = {
            "channel": request.channel,
            "message_id": request.message_id,
            "text": request.text,
            "subject": request.subject,
            "matched": matched,
            "received_at": received.isoformat(),
            "campaign_named": request.campaign,
        }
        stored: list[StoredRevocation] = []
        if matched:
            # Effective at once, whatever the message's own timestamp says.
            stored = [
                self.repo.revoke_from_signal(
                    tenant.name, subject, now, request.channel, request.message_id, campaign, evidence, actor
                )
                for subject in subjects
            ]
        duplicate = bool(stored) and all(s.duplicate for s in stored)
        if not duplicate:
            for i, subject in enumerate(subjects):
                self.repo.audit(
                    tenant=tenant.name,
                    at=now,
                    actor=actor,
                    action="consent.revoke" if matched else "consent.signal",
                    subject=subject,
                    detail={
                        **evidence,
                        "text": scrub(request.text)[:2000],
                        "subject": scrub(request.subject)[:500],
                        "scope": scope,
                        "revoked": bool(matched),
                        "revocation_id": stored[i].revocation_id if stored else "",
                        "subject_kind": "phone" if request.phone_e164 and i == 0 else "email",
                    },
                )
        log.info(
            "revocation_signal",
            channel=request.channel,
            matched=matched or "none",
            scope="campaign" if campaign else "all_campaigns",
            duplicate=duplicate,
        )
        response = compliance_pb2.RevocationSignalResponse(
            revoked=bool(matched), matched=matched, scope=scope if matched else "", duplicate=duplicate
        )
        if stored:
            response.revocation_id = stored[0].revocation_id
            response.revoked_at.CopyFrom(to_proto(stored[0].revoked_at))
        return response

    def ClaimRevocationConfirmation(
        self, request: compliance_pb2.ClaimRevocationConfirmationRequest, context: grpc.ServicerContext
    ) -> compliance_pb2.ClaimRevocationConfirmationResponse:
        tenant = self._tenant(context, request.tenant)
        if not request.revocation_id or len(request.revocation_id) > 64:
            grpc_errors.invalid_argument(context, "revocation_id", "a revocation id is required")
        now = utcnow()
        allowed, reason = self.repo.claim_confirmation(
            tenant.name, request.revocation_id, now, CONFIRMATION_WINDOW
        )
        self.repo.audit(
            tenant=tenant.name,
            at=now,
            actor=audit_actor(request.actor),
            action="consent.confirmation",
            detail={"revocation_id": request.revocation_id, "allowed": allowed, "reason": reason},
        )
        return compliance_pb2.ClaimRevocationConfirmationResponse(allowed=allowed, reason=reason)
