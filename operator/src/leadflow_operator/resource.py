"""The Tenant resource's coordinates, shared by the handlers and the chart's CRD."""

from __future__ import annotations

from typing import Final

GROUP: Final = "leadflow.dev"
VERSION: Final = "v1alpha1"
PLURAL: Final = "tenants"
KIND: Final = "Tenant"
# Holds a deleted Tenant until compliance has deactivated it.
FINALIZER: Final = "leadflow.dev/deactivate"
# The Secret holding a Tenant's first API key: "<tenant><suffix>" in the Tenant's namespace.
API_KEY_SECRET_SUFFIX: Final = "-api-key"  # noqa: S105 (a name, not a secret)
