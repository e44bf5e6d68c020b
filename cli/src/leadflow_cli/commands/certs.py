"""`leadflow certs create`: the development CA and one certificate per component."""

from __future__ import annotations

import argparse
from pathlib import Path

from leadflow_core import dev_ca
from leadflow_core.access_policy import DEV_CERTIFICATES


def ensure_dev_certificates(directory: Path) -> list[str]:
    """Create what is missing under `directory` (never replaces a valid set)."""
    return dev_ca.ensure(directory, DEV_CERTIFICATES)


def _create(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    created = ensure_dev_certificates(directory)
    print(
        f"{directory}: created {', '.join(created)}" if created else f"{directory}: all certificates present"
    )
    return 0
