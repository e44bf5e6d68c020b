"""IANA time zones from the `tzdata` package pinned in uv.lock, never the host's /usr/share/zoneinfo.

Calling hours depend on the zone rules; the OS copy differs between machines and images, so a
decision could change with the host. Zones are read from the package's files directly (not via
`zoneinfo.ZoneInfo(key)`, which searches the OS path first).
"""

from __future__ import annotations

import functools
import importlib
from importlib import metadata, resources
from zoneinfo import ZoneInfo

# tzdata ships no type hints: read its two constants through importlib.
TZDATA_VERSION: str = str(importlib.import_module("tzdata").IANA_VERSION)
PACKAGE_VERSION: str = metadata.version("tzdata")


class UnknownZone(ValueError):
    """The name is not a zone in the pinned tzdata package."""


@functools.cache
def known_zones() -> frozenset[str]:
    return frozenset(resources.files("tzdata").joinpath("zones").read_text().split())


@functools.cache
def zone(name: str) -> ZoneInfo:
    # The allow-list also keeps a crafted name ("../..") from reading another file.
    if name not in known_zones():
        raise UnknownZone(f"{name!r} is not an IANA time zone in tzdata {TZDATA_VERSION}")
    parts = name.split("/")
    package = ".".join(["tzdata", "zoneinfo", *parts[:-1]])
    with resources.files(package).joinpath(parts[-1]).open("rb") as f:
        return ZoneInfo.from_file(f, key=name)
