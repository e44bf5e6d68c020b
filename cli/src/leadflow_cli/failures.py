"""What the CLI prints when a command fails: one line that says what to check, no traceback."""

from __future__ import annotations

import os
import sys

# Which setting names the address of each service, for "cannot reach" hints.
ADDRESS_SETTINGS = {
    "dispatcher": ("LEADFLOW_DISPATCHER_ADDR", "127.0.0.1:50052"),
    "compliance": ("LEADFLOW_COMPLIANCE_ADDR", "127.0.0.1:50051"),
}


def _target() -> str:
    """The service the command last opened a channel to (the one that failed)."""
    connections = sys.modules.get("leadflow_cli.connections")
    opened: list[str] = getattr(connections, "OPENED", [])
    return opened[-1] if opened else ""


def describe_rpc_error(err: BaseException, service: str = "") -> list[str]:
    from leadflow_core.grpc_errors import field_violations

    code = err.code().name if hasattr(err, "code") else "UNKNOWN"
    detail = err.details() if hasattr(err, "details") else str(err)
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        name = service or _target()
        candidates = [name] if name else list(ADDRESS_SETTINGS)
        hints = []
        for n in candidates:
            env, default = ADDRESS_SETTINGS[n]
            hints.append(f"{n} at {os.environ.get(env, default)} (set {env})")
        return [
            f"error: cannot reach {' or '.join(hints)}: {code.lower()}",
            "  is the service running? `make run` starts the whole mesh locally",
        ]
    lines = [f"error: {code}: {detail}"]
    lines += [f"  {field}: {why}" for field, why in field_violations(err)]  # type: ignore[arg-type]
    return lines


def report(err: BaseException) -> int:
    """Print a failure for a person and return the exit code; re-raise what we do not know."""
    grpc = sys.modules.get("grpc")
    if grpc is not None and isinstance(err, grpc.RpcError):
        for line in describe_rpc_error(err):
            print(line, file=sys.stderr)
        return 2
    if isinstance(err, ValueError | KeyError | OSError):
        print(f"error: {err}", file=sys.stderr)
        return 2
    raise err
