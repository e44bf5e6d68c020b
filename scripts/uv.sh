#!/usr/bin/env bash
# Runs uv, installing the pinned version from PyPI first when this machine has none.
set -euo pipefail
UV_VERSION=0.13.9
if command -v uv >/dev/null 2>&1; then exec uv "$@"; fi
if [ -x "$HOME/.local/bin/uv" ]; then exec "$HOME/.local/bin/uv" "$@"; fi
echo "uv not found: installing uv==$UV_VERSION from PyPI (python3 -m pip install --user)" >&2
python3 -m pip install --quiet --user "uv==$UV_VERSION" >&2 \
  || python3 -m pip install --quiet "uv==$UV_VERSION" >&2
if command -v uv >/dev/null 2>&1; then exec uv "$@"; fi
exec "$HOME/.local/bin/uv" "$@"
