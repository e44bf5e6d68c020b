"""Arguments of `leadflow compliance` (no heavy imports: `--help` stays fast)."""

from __future__ import annotations

import argparse
from typing import Any

from leadflow_cli.lazy import handler


def register(sub: argparse._SubParsersAction[Any]) -> None:
    group = sub.add_parser("compliance", help="consent, do-not-call, pause, emergency stop, audit log, rules")
    csub = group.add_subparsers(dest="compliance_command", required=True, metavar="AREA")

    consent = csub.add_parser("consent", help="record or revoke consent").add_subparsers(
        dest="consent_command", required=True, metavar="ACTION"
    )
    rec = consent.add_parser("record", help="record prior express written consent")
    rec.add_argument("tenant")
    rec.add_argument("phone", help="E.164 number")
    rec.add_argument("--disclosure", default="", help="the disclosure text the person agreed to")
    rec.add_argument("--at", default="", help="when consent was given (ISO 8601; default now)")
    rec.add_argument("--page-url", default="")
    rec.add_argument("--ip", default="")
    rec.add_argument("--trustedform", default="", help="TrustedForm certificate URL")
    rec.add_argument("--jornaya", default="", help="Jornaya LeadiD token")
    rec.add_argument("--seller", default="", help="the seller the consent names")
    rec.add_argument("--disclosure-version", default="", help="version id of the disclosure shown")
    rec.add_argument("--form-submission", default="", help="id of the stored form submission")
    rec.set_defaults(func=handler("leadflow_cli.commands.compliance:_consent_record"))
    rev = consent.add_parser("revoke", help="revoke consent at once")
    rev.add_argument("tenant")
    rev.add_argument("phone")
    rev.add_argument("--note", default="")
    rev.set_defaults(func=handler("leadflow_cli.commands.compliance:_consent_revoke"))

    dnc = csub.add_parser(
        "dnc", help="the tenant's do-not-call list and the national registry"
    ).add_subparsers(dest="dnc_command", required=True, metavar="ACTION")
    add = dnc.add_parser("add", help="add a number to the tenant's do-not-call list")
    add.add_argument("tenant")
    add.add_argument("phone")
    add.add_argument("--reason", default="")
    add.set_defaults(func=handler("leadflow_cli.commands.compliance:_dnc_add"))
    rem = dnc.add_parser("remove", help="remove a number from the tenant's do-not-call list")
    rem.add_argument("tenant")
    rem.add_argument("phone")
    rem.set_defaults(func=handler("leadflow_cli.commands.compliance:_dnc_remove"))
    imp = dnc.add_parser(
        "import", help="load a National DNC Registry or state list file (area code, number per line)"
    )
    imp.add_argument("file")
    imp.add_argument(
        "--list",
        default="federal",
        help="which list: 'federal' (the National DNC Registry, the default) or a state's own list,"
        " 'state:TX', 'state:FL', ... (see `leadflow compliance rules STATE`)",
    )
    imp.add_argument(
        "--add",
        action="store_true",
        help="a change file applied to the registry instead of replacing it; a line may end in"
        " ',A' (add, the default) or ',D' (delete), e.g. '201,5550123,D'",
    )
    imp.set_defaults(func=handler("leadflow_cli.commands.compliance:_dnc_import"))

    pause = csub.add_parser("pause", help="pause all dialing for a tenant")
    pause.add_argument("tenant")
    pause.add_argument("--reason", default="")
    pause.set_defaults(func=handler("leadflow_cli.commands.compliance:_pause"))
    resume = csub.add_parser("resume", help="resume dialing for a tenant")
    resume.add_argument("tenant")
    resume.set_defaults(func=handler("leadflow_cli.commands.compliance:_resume"))

    estop = csub.add_parser("estop", help="emergency stop").add_subparsers(
        dest="estop_command", required=True, metavar="ACTION"
    )
    eset = estop.add_parser("set", help="stop all dialing (one tenant, or every tenant) for a while")
    eset.add_argument("--tenant", default="", help="default: every tenant")
    eset.add_argument("--duration", type=int, required=True, help="seconds")
    eset.add_argument("--reason", required=True)
    eset.set_defaults(func=handler("leadflow_cli.commands.compliance:_estop_set"))
    eclear = estop.add_parser("clear", help="lift an emergency stop")
    eclear.add_argument("--tenant", default="", help="default: the global stop")
    eclear.set_defaults(func=handler("leadflow_cli.commands.compliance:_estop_clear"))

    audit = csub.add_parser("audit", help="the decision audit log").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION"
    )
    export = audit.add_parser("export", help="print a tenant's audit records as JSON lines")
    export.add_argument("tenant")
    export.add_argument("--since", default="", help="ISO 8601 start (inclusive)")
    export.add_argument("--until", default="", help="ISO 8601 end (exclusive)")
    export.set_defaults(func=handler("leadflow_cli.commands.compliance:_audit_export"))

    rules = csub.add_parser("rules", help="the calling rules per state, with citations (works offline)")
    rules.add_argument("state", nargs="?", default="", help="two-letter code (e.g. FL, PR); default: all")
    rules.add_argument("--json", action="store_true", help="one JSON object per rule")
    rules.set_defaults(func=handler("leadflow_cli.commands.compliance:_rules"))
