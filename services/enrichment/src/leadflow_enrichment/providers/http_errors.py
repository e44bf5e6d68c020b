"""HTTP answers and transport failures of outside systems, turned into classified ProviderErrors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from leadflow_enrichment.failures import ErrorClass, ProviderError

# Caps a Retry-After so a provider's typo cannot park a job for days.
MAX_RETRY_AFTER_SECONDS = 3600.0


def parse_retry_after(
    value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> float | None:
    """Retry-After as delta-seconds or an HTTP date (RFC 9110 10.2.3); None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now()).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def classify_status(status: int) -> ErrorClass:
    """The class of a non-2xx HTTP answer, when the body says nothing more specific."""
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status in (401, 403):
        return ErrorClass.EXTERNAL
    if status in (408, 425) or status >= 500:
        return ErrorClass.TEMPORARY
    if status in (400, 404, 409, 413, 422):
        return ErrorClass.VALIDATION
    return ErrorClass.EXTERNAL


def error_for_response(response: httpx.Response, provider: str, detail: str = "") -> ProviderError:
    """A ProviderError for a non-2xx answer; the body is not quoted (it may echo PII back)."""
    status = response.status_code
    error_class = classify_status(status)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    # 503 with Retry-After is the server asking us to wait, like a 429.
    if status == 503 and retry_after is not None:
        error_class = ErrorClass.RATE_LIMITED
    message = f"{provider} answered HTTP {status}" + (f": {detail}" if detail else "")
    # A 5xx says the server failed, not that it did nothing: the effect may have happened.
    return ProviderError(
        message,
        error_class,
        retry_after=retry_after,
        provider=provider,
        status=status,
        ambiguous=status >= 500,
    )


# Failures before the request left this process: the provider cannot have acted on it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@contextmanager
def transport_errors(provider: str) -> Iterator[None]:
    """Timeouts and connection failures are temporary. Only a failure to connect proves the
    request was never received; any later one (a read timeout, a dropped connection) is ambiguous."""
    try:
        yield
    except httpx.TimeoutException as err:
        raise ProviderError(
            f"{provider} timed out ({type(err).__name__})",
            ErrorClass.TEMPORARY,
            provider=provider,
            ambiguous=not isinstance(err, _NOT_SENT),
        ) from err
    except httpx.TransportError as err:
        raise ProviderError(
            f"{provider} unreachable ({type(err).__name__})",
            ErrorClass.TEMPORARY,
            provider=provider,
            ambiguous=not isinstance(err, _NOT_SENT),
        ) from err


def check_base_url(url: str, provider: str) -> str:
    """Credentials only travel over TLS, except to this machine (local fakes and dev proxies)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return url.rstrip("/")
    raise ProviderError(
        f"{provider} base URL must be https (got scheme {parts.scheme or 'none'!r})",
        ErrorClass.EXTERNAL,
        provider=provider,
    )


def make_client(connect_timeout: float, timeout: float) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        follow_redirects=False,
        headers={"User-Agent": "leadflow-enrichment/0.1"},
    )
