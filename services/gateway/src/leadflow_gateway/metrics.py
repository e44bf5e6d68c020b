"""Prometheus metrics (`leadflow_gateway_*`); labels are sources and status codes, never PII."""

from __future__ import annotations

import re

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "leadflow_gateway_requests",
    "HTTP requests answered, by lead source and status code.",
    ["source", "status"],
)
LATENCY = Histogram(
    "leadflow_gateway_request_seconds",
    "Time to answer a request, by lead source.",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LEADS = Counter(
    "leadflow_gateway_leads",
    "Leads handed to the dispatcher, by source and outcome (accepted, duplicate).",
    ["source", "outcome"],
)

DEPENDENCY = Histogram(
    "leadflow_gateway_dependency_seconds",
    "Time spent in calls to other services (evaluate, submit, source_config, graph_fetch, ...).",
    ["call"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

SOURCES = ("meta", "hubspot", "salesforce", "zapier", "marketo", "google", "form")
# Salesforce's path may end in the source's path token (never a label).
_WEBHOOK = re.compile(r"^/v1/webhooks/[^/]+/([a-z]+)(?:/[^/]*)?/?$")


def source_label(path: str) -> str:
    """A bounded label from the path: the tenant name never becomes a label."""
    if path.startswith("/v1/leads"):
        return "api"
    if path.startswith("/v1/calls/"):
        return "calls"
    if path.startswith("/v1/replies/"):
        return "replies"
    m = _WEBHOOK.match(path)
    if m:
        return m.group(1) if m.group(1) in SOURCES else "unknown"
    if path in ("/healthz", "/readyz", "/metrics"):
        return "probe"
    return "other"
