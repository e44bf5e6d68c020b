"""Finding a Redis for the local mesh, or starting a private one under ./var."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import redis

INSTALL_HINT = (
    "install it (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis) "
    "or point LEADFLOW_REDIS_URL at a running Redis"
)


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def start_private(url: str, var_dir: Path) -> subprocess.Popen[bytes]:
    """Start redis-server on the URL's port with its data (AOF) under var/redis."""
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise RuntimeError(f"no Redis answers at {url}; {INSTALL_HINT}")
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(f"no Redis answers at {url} and redis-server is not on PATH; {INSTALL_HINT}")
    data = var_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(parsed.port or 6379),
        "--dir", str(data.resolve()),
        "--appendonly", "yes",
        "--save", "",
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
