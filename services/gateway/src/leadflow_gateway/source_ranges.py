"""A source's `allowedSourceRanges`: the networks its sender may post from (403 otherwise)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from starlette.requests import Request

from leadflow_gateway.backends import SourceContext
from leadflow_gateway.errors import GatewayError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=1024)
def _networks(ranges: tuple[str, ...]) -> tuple[Network, ...]:
    # Validated when the tenant was applied; anything unreadable allows nothing rather than all.
    out: list[Network] = []
    for item in ranges:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            continue
    return tuple(out)


def sender_allowed(ranges: tuple[str, ...], host: str) -> bool:
    if not ranges:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in _networks(ranges))


def check_network(ctx: SourceContext, request: Request) -> None:
    """The client address is the peer's, or X-Forwarded-For's when uvicorn trusts the proxy
    (FORWARDED_ALLOW_IPS)."""
    host = request.client.host if request.client else ""
    if not sender_allowed(tuple(ctx.config.allowed_source_ranges), host):
        raise GatewayError(403, "permission_denied", "this source does not accept requests from your network")
