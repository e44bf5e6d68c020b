#!/usr/bin/env bash
# promtool and prometheus for the tests (alert rule tests, a real scrape of the mesh), from the
# Debian package `prometheus` WITHOUT installing it: the package is downloaded with the system's
# apt lists and unpacked with dpkg-deb into a cache folder, so no service is set up or started.
# Prints the folder holding both binaries. Uses binaries already on PATH when both are there.
set -euo pipefail

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  dirname "$(command -v promtool)"
  exit 0
fi
CACHE="${LEADFLOW_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leadflow/tools}/prometheus"
if [ -x "$CACHE/usr/bin/promtool" ] && [ -x "$CACHE/usr/bin/prometheus" ]; then
  echo "$CACHE/usr/bin"
  exit 0
fi
command -v apt-get >/dev/null || {
  echo "prometheus-tools: no apt-get here; install promtool and prometheus (Debian/Ubuntu package prometheus)" >&2
  exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
download() { (cd "$work" && apt-get download -qq prometheus) >"$work/download.log" 2>&1; }
if ! download; then
  # Lists may be missing on a fresh machine: read them once, then try again.
  apt-get update -qq >"$work/update.log" 2>&1 || true
  download || { cat "$work/download.log" >&2; echo "prometheus-tools: apt-get download prometheus failed" >&2; exit 1; }
fi
rm -rf "$CACHE.tmp"
mkdir -p "$CACHE.tmp"
dpkg-deb -x "$work"/prometheus_*.deb "$CACHE.tmp"
rm -rf "$CACHE"
mv "$CACHE.tmp" "$CACHE"
echo "$CACHE/usr/bin"
