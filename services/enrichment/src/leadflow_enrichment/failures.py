"""Every failure a job can meet, classified; the class decides what happens next."""

from __future__ import annotations

from enum import StrEnum


class ErrorClass(StrEnum):
    # Network blips, timeouts, 5xx: retry with exponential backoff and jitter.
    TEMPORARY = "temporary"
    # 429 or quota: wait for the provider's Retry-After, then retry.
    RATE_LIMITED = "rate_limited"
    # The data cannot be accepted (4xx on our payload): dead-letter at once, retrying cannot help.
    VALIDATION = "validation"
    # Our own bug or a broken dependency of ours: retry a few times, then dead-letter.
    SYSTEM = "system"
    # The provider refused for its own reasons (auth, account): dead-letter for a person.
    EXTERNAL = "external"
    # Compliance said not now or never: defer to its instant, or stop.
    CONSENT = "consent"
    # A business rule (plan, budget, paused): defer or stop, never retry blindly.
    BUSINESS = "business"


class ProviderError(Exception):
    """Raised by provider clients; carries the class and any Retry-After the provider sent."""

    def __init__(
        self,
        message: str,
        error_class: ErrorClass,
        *,
        retry_after: float | None = None,
        provider: str = "",
        status: int | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        # The request may have reached the provider and taken effect (a 5xx, a timeout or a
        # dropped connection after it was sent): for a call, "not placed" is then unproven.
        self.ambiguous = ambiguous
        self.error_class = error_class
        self.retry_after = retry_after
        self.provider = provider
        self.status = status
