"""Reading a tenant's provider credentials and options, failing clearly when one is missing."""

from __future__ import annotations

from collections.abc import Mapping

from leadflow_enrichment.failures import ErrorClass, ProviderError


def required(values: Mapping[str, str], key: str, provider: str, what: str = "setting") -> str:
    value = values.get(key, "").strip()
    if not value:
        # A person must fix the tenant's configuration; retrying cannot help.
        raise ProviderError(
            f"{provider} {what} {key!r} is not configured", ErrorClass.EXTERNAL, provider=provider
        )
    return value
