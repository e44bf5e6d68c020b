#!/usr/bin/env bash
# Creates .venv with every workspace package and the dev tools, exactly as pinned in uv.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 (3.11) is required: install it (Debian/Ubuntu: sudo apt-get install -y python3.11 python3.11-venv)" >&2
  exit 1
fi
bash scripts/uv.sh sync --all-packages --frozen --quiet
