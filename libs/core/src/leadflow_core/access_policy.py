"""Who may call what: the one table of gRPC methods and the identities allowed to call each.

An identity is the last path segment of the caller's verified SPIFFE ID
(`spiffe://leadflow.local/<identity>`). A method missing from `POLICY` is denied to everyone,
and `tests` walk every method of every service in `proto/` against this table, so a new RPC
without an entry fails CI. Health and reflection are open to every authenticated peer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

GATEWAY: Final = "gateway"
COMPLIANCE: Final = "compliance"
DISPATCHER: Final = "dispatcher"
OPERATOR: Final = "operator"
CLI: Final = "cli"  # people, through `leadflow ...`; the operator role
DIAL_WORKER: Final = "dial-worker"  # consumes dial.* queues
JOBS_WORKER: Final = "jobs-worker"  # consumes enrich, crm_sync, call_status

IDENTITIES: Final = (GATEWAY, COMPLIANCE, DISPATCHER, OPERATOR, CLI, DIAL_WORKER, JOBS_WORKER)

# Certificates the development CA issues: file name -> identities (URI SANs) it carries. A
# worker process consuming every queue (`make run`) holds both worker identities.
DEV_CERTIFICATES: Final[Mapping[str, tuple[str, ...]]] = {
    **{identity: (identity,) for identity in IDENTITIES},
    "worker": (DIAL_WORKER, JOBS_WORKER),
}

# Services every authenticated peer may call (probes, grpcurl).
OPEN_SERVICES: Final = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

_C = "/leadflow.v1.ComplianceService/"
_D = "/leadflow.v1.DispatcherService/"
_T = "/leadflow.v1.TenantAdminService/"
_WORKERS = (DIAL_WORKER, JOBS_WORKER)


def _allow(*identities: str) -> frozenset[str]:
    return frozenset(identities)


# Operations (`leadflow ops ...`), served by the dispatcher: people only.
_ADMIN_METHODS = (
    "GetQueueStatus",
    "GetTenantLimits",
    "GetErrorStats",
    "GetLeadStats",
    "GetCallStats",
    "GetSystemHealth",
    "ListAdminAudit",
    "SearchLeads",
    "ListRequests",
    "ListEventDeliveries",
    "ReplayRequests",
    "PauseQueues",
    "ResumeQueues",
    "SetEmergencyMode",
    "SetTenantCallsPaused",
    "ResolveError",
    "ListReviews",
    "DecideReview",
)

POLICY: Final[Mapping[str, frozenset[str]]] = {
    # Compliance: decisions, reservations, consent, DNC, audit.
    _C + "Evaluate": _allow(GATEWAY, DIAL_WORKER, CLI),
    _C + "EvaluateBatch": _allow(GATEWAY, DIAL_WORKER, CLI),
    _C + "ReserveCall": _allow(DIAL_WORKER),
    # The dispatcher's StartDials claims attempts and reserves them here in one hop.
    _C + "ReserveCalls": _allow(DISPATCHER),
    _C + "SettleCall": _allow(DIAL_WORKER, DISPATCHER),
    _C + "SettleCalls": _allow(DIAL_WORKER, DISPATCHER),
    _C + "RecordContactAttempt": _allow(DIAL_WORKER, CLI),
    _C + "RecordConsent": _allow(CLI),
    _C + "RevokeConsent": _allow(CLI),
    _C + "AddDoNotCall": _allow(CLI),
    _C + "RemoveDoNotCall": _allow(CLI),
    _C + "ImportDncRegistry": _allow(CLI),
    # The dispatcher's AdminService forwards an operator's emergency mode here.
    _C + "SetEmergencyStop": _allow(CLI, DISPATCHER),
    _C + "ClearEmergencyStop": _allow(CLI, DISPATCHER),
    _C + "ListDoNotCall": _allow(CLI),
    _C + "ExportAuditLog": _allow(CLI),
    _C + "RecordRevocationSignal": _allow(GATEWAY, CLI),
    _C + "ClaimRevocationConfirmation": _allow(GATEWAY),
    # Dispatcher: leads, their timeline and jobs, dead letters.
    _D + "SubmitLead": _allow(GATEWAY),
    _D + "SubmitLeads": _allow(GATEWAY),
    _D + "GetLead": _allow(*_WORKERS, CLI),
    _D + "GetLeads": _allow(*_WORKERS, CLI),
    _D + "GetTimeline": _allow(GATEWAY, CLI),
    _D + "FindLeads": _allow(GATEWAY, CLI),
    _D + "RecordEvent": _allow(*_WORKERS),
    _D + "RecordEvents": _allow(*_WORKERS),
    _D + "ClaimDialAttempt": _allow(DIAL_WORKER),
    _D + "StartDials": _allow(DIAL_WORKER),
    _D + "CompleteDialAttempt": _allow(DIAL_WORKER),
    _D + "CompleteDials": _allow(DIAL_WORKER),
    _D + "DeferDial": _allow(DIAL_WORKER),
    _D + "RecordCallStatus": _allow(GATEWAY, *_WORKERS),
    _D + "RecordCallStatuses": _allow(GATEWAY),
    _D + "RecordDeadLetter": _allow(*_WORKERS),
    _D + "ListDeadLetters": _allow(CLI),
    _D + "GetDeadLetter": _allow(CLI),
    _D + "ReplayDeadLetters": _allow(CLI),
    _D + "PurgeDeadLetters": _allow(CLI),
    _D + "ResolveDeadLetter": _allow(CLI),
    # The inbound request log: the gateway writes it and redeems replay grants.
    _D + "RecordRequests": _allow(GATEWAY),
    _D + "ClaimReplay": _allow(GATEWAY),
    # Tenant administration.
    _T + "ApplyTenant": _allow(OPERATOR, CLI),
    _T + "GetTenant": _allow(OPERATOR, CLI, GATEWAY, DISPATCHER),
    _T + "ListTenants": _allow(OPERATOR, CLI, DISPATCHER),
    _T + "SetPaused": _allow(OPERATOR, CLI, DISPATCHER),
    _T + "DeactivateTenant": _allow(OPERATOR, CLI),
    _T + "GetTenantUsage": _allow(OPERATOR, CLI, DISPATCHER),
    # The operator makes each Tenant's first key into a Secret.
    _T + "CreateApiKey": _allow(OPERATOR, CLI),
    # People manage keys (`leadflow keys`); the operator only issues the first one.
    _T + "ListApiKeys": _allow(CLI),
    _T + "RevokeApiKey": _allow(CLI),
    _T + "AuthenticateApiKey": _allow(GATEWAY),
    _T + "AuthenticateApiKeys": _allow(GATEWAY),
    # Secrets in plaintext: only the components that use them.
    _T + "GetSourceConfig": _allow(GATEWAY),
    # The dispatcher signs and sends tenants' events with their endpoints' secrets.
    _T + "GetProviderConfig": _allow(*_WORKERS, DISPATCHER),
    _T + "RotateSecrets": _allow(CLI),
    **{f"/leadflow.v1.AdminService/{method}": _allow(CLI) for method in _ADMIN_METHODS},
}


def service_of(method: str) -> str:
    """`/pkg.Service/Method` -> `pkg.Service`."""
    return method.lstrip("/").partition("/")[0]


def is_allowed(method: str, identities: Iterable[str]) -> bool:
    """True when one of the caller's verified identities may call `method`."""
    callers = set(identities)
    if not callers:
        return False
    if service_of(method) in OPEN_SERVICES:
        return True
    return bool(POLICY.get(method, frozenset()) & callers)
