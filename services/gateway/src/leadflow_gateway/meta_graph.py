"""Client of Meta's Graph API: fetch a lead's `field_data` by its `leadgen_id`."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from leadflow_core.logs import get_logger
from leadflow_gateway.ascii_text import is_digits
from leadflow_gateway.metrics import DEPENDENCY

log = get_logger("leadflow.gateway.meta_graph")


class GraphUnavailable(Exception):
    """Temporary: Meta should redeliver (we answer 503)."""


class GraphLeadGone(Exception):
    """Permanent for this lead: deleted, or not visible to this token."""


class MetaGraphClient:
    def __init__(self, base_url: str, timeout: float, attempts: int) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )
        self._attempts = attempts

    async def close(self) -> None:
        await self._client.aclose()

    async def fetch_lead(self, leadgen_id: str, access_token: str) -> dict[str, Any]:
        """`GET /{leadgen_id}?access_token=…` with retries on timeouts, 429 and 5xx."""
        if not is_digits(leadgen_id):
            raise GraphLeadGone("leadgen_id is not numeric")
        delay = 0.1
        for attempt in range(1, self._attempts + 1):
            try:
                with DEPENDENCY.labels(call="graph_fetch").time():
                    resp = await self._client.get(
                        leadgen_id,
                        params={"access_token": access_token, "fields": "id,created_time,field_data"},
                    )
            except httpx.HTTPError as err:
                log.warning("graph_request_failed", attempt=attempt, error=type(err).__name__)
            else:
                if resp.status_code == 200:
                    doc = resp.json()
                    if not isinstance(doc, dict):
                        raise GraphUnavailable("unexpected Graph API answer")
                    return doc
                if resp.status_code in (400, 404) and not _token_problem(resp):
                    raise GraphLeadGone(_graph_error(resp))
                # A revoked token or missing permission may be fixed by the tenant while Meta keeps
                # redelivering, so it is temporary for us, like 429 and 5xx.
                log.warning("graph_error", attempt=attempt, status=resp.status_code, error=_graph_error(resp))
            if attempt < self._attempts:
                await asyncio.sleep(delay + random.uniform(0, delay))
                delay *= 2
        raise GraphUnavailable("Graph API did not answer")


# Graph error codes of the token or its permissions (190 invalid token, 10 and 200-299 permissions).
def _token_problem(resp: httpx.Response) -> bool:
    try:
        code = resp.json().get("error", {}).get("code")
    except (ValueError, AttributeError):
        return False
    return isinstance(code, int) and (code in (10, 102, 190) or 200 <= code <= 299)


def _graph_error(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error", {})
        return f"{err.get('type', '')} {err.get('code', '')}: {err.get('message', '')}"[:300]
    except (ValueError, AttributeError):
        return f"HTTP {resp.status_code}"
