"""No PII in any answer, log line or dead letter: leads with known personal data, good and bad,
through several sources; then every HTTP answer, every log the services wrote and the dead-letter
table are searched for those values."""

from __future__ import annotations

import json
import random
import uuid
from urllib.parse import urlencode

import httpx
from sqlalchemy import text

from leadflow.v1 import dispatcher_pb2
from services.gateway.tests.gateway_vendors import FORM_KEY, SF_HEADERS, ZAPIER_SECRET, salesforce_message
from services.gateway.tests.harness import Harness

T = "acme"


def test_no_pii_in_answers_logs_or_dead_letters(harness: Harness) -> None:
    tag = uuid.uuid4().hex[:6]
    first, last = f"Zebediah{tag}", f"Quarrington{tag}"
    email = f"zeb.{tag}@pii-scan.example.org"
    local = f"{random.randint(100, 199)}"
    e164 = f"+1646555{local.zfill(4)}"
    formatted = f"(646) 555-{local.zfill(4)}"
    street = f"{random.randint(10, 99)} Wisteria Lane {tag}"
    pii = [first, last, email, e164, formatted, e164[2:], street]
    api = {"Authorization": f"Bearer {harness.api_keys[T]}"}
    answers: list[httpx.Response] = []

    def lead(**extra: object) -> dict[str, object]:
        return {
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone": formatted,
            "address": {"street": street},
            "vendor_lead_id": uuid.uuid4().hex,
            **extra,
        }

    good = httpx.post(f"{harness.url}/v1/leads", json=lead(), headers=api)
    assert good.status_code == 202, good.text
    answers.append(good)
    bad_bodies = [
        lead(first_name=f"{first}\x00"),  # NUL: 400
        lead(email=f"{email}\x00"),
        lead(email=f"not-an-email {email} {first}"),
        lead(phone=f"{formatted} ext {first}"),
        lead(urgency=f"{first} urgent"),
        lead(consent={"granted": "maybe", "ip": first}),
        {"phone": e164, "custom_fields": {first: "x" * 70_000}},  # too large: 413
    ]
    for body in bad_bodies:
        answers.append(httpx.post(f"{harness.url}/v1/leads", json=body, headers=api))
    answers.append(
        httpx.post(
            f"{harness.url}/v1/leads",
            content=json.dumps(lead()).encode()[:-3],  # broken JSON around the PII
            headers={**api, "Content-Type": "application/json"},
        )
    )
    answers.append(
        httpx.post(f"{harness.url}/v1/leads", json=lead(), headers={"Authorization": f"Bearer {email}"})
    )
    answers.append(httpx.post(f"{harness.url}/v1/leads", json=lead(), headers={**api, "X-Pad": email * 2000}))
    answers.append(
        httpx.post(
            f"{harness.url}/v1/webhooks/{T}/form",
            content=urlencode(
                {"form_key": FORM_KEY, "name": f"{first} {last}", "phone": f"{e164}\x07", "email": email}
            ),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://acme.example"},
        )
    )
    answers.append(
        httpx.post(
            f"{harness.url}/v1/webhooks/{T}/zapier",
            json={
                "Lead Phone": f"{first} {e164}",
                "Lead Name": f"{first} {last}",
                "Zap Run": uuid.uuid4().hex,
            },
            headers={"X-Leadflow-Secret": ZAPIER_SECRET},
        )
    )
    answers.append(
        httpx.post(
            f"{harness.url}/v1/webhooks/{T}/salesforce",
            content=salesforce_message(
                [("04l5g000001AAA", "00Q5g0000001AAA", e164)], org_id="00D000000000001AAA"
            ),
            headers=SF_HEADERS,
        )
    )
    statuses = [a.status_code for a in answers]
    assert statuses.count(202) >= 1
    assert {400, 401, 413, 431} <= set(statuses), statuses

    # A worker gives up on the stored lead with an error quoting its data, as a database or a
    # provider's answer would: the dead letter keeps the error, without the data.
    lead_id = good.json()["lead_id"]
    harness.dispatch().RecordDeadLetter(
        dispatcher_pb2.DeadLetter(
            tenant=T,
            queue="crm_sync",
            lead_id=lead_id,
            actor="crm_sync",
            job_kind="crm_sync",
            error_class="system",
            error=(
                f"DataError: invalid input for column \"last_name\": '{last.upper()}' ({first} {last}, "
                f"{email}, {e164}, {formatted}, {street})"
            ),
            attempts=3,
        )
    )
    with harness.db.connect() as conn:
        dead = conn.execute(
            text("SELECT error, note, message_json FROM dispatcher_dead_letters WHERE lead_id = :l"),
            {"l": lead_id},
        ).all()
        job_errors = conn.execute(
            text("SELECT coalesce(last_error, '') FROM dispatcher_jobs WHERE lead_id = :l"), {"l": lead_id}
        ).all()
    assert dead, "the dead letter was recorded"
    assert "DataError" in dead[0][0]

    places = {
        **{
            f"answer {i} ({a.status_code})": a.text + json.dumps(dict(a.headers))
            for i, a in enumerate(answers)
        },
        "dead letters": json.dumps([list(r) for r in dead]),
        "job errors": json.dumps([list(r) for r in job_errors]),
        "gateway log": harness.gateway.logs(),
        "compliance log": harness.compliance.logs(),
        "dispatcher log": harness.dispatcher.logs(),
    }
    leaks = [
        (where, value)
        for where, content in places.items()
        for value in pii
        if value.lower() in content.lower()
    ]
    assert not leaks, leaks
