"""Is granted consent backed by evidence? Pure.

Prior express written consent (47 CFR 64.1200(a)(2), (f)(9)) is a signed agreement that names the
seller and discloses what the person agrees to. Leadflow keeps consent as *verified* only with:

- the disclosure shown (its text, or a version id of it),
- the seller named,
- when it was given,
- an evidence reference: a TrustedForm certificate URL, a Jornaya LeadiD, or the id of the stored
  form submission that carried it.

Anything less is stored as `unverified`: kept, synced to the CRM, never auto-dialed.
"""

from __future__ import annotations

from leadflow.v1 import lead_pb2

CONSENT_RULE = "47 CFR 64.1200(a)(2), (f)(9)"


def missing_evidence(evidence: lead_pb2.ConsentEvidence) -> tuple[str, ...]:
    """What granted consent lacks to be verified; empty when complete."""
    missing: list[str] = []
    if not (evidence.disclosure_text.strip() or evidence.disclosure_version.strip()):
        missing.append("disclosure text or version")
    if not evidence.seller.strip():
        missing.append("seller")
    if not evidence.HasField("consented_at"):
        missing.append("time of consent")
    if not (
        evidence.trustedform_cert_url.strip()
        or evidence.jornaya_leadid.strip()
        or evidence.form_submission_id.strip()
    ):
        missing.append("evidence reference (TrustedForm, Jornaya LeadiD or form submission)")
    return tuple(missing)
