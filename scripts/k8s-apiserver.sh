#!/usr/bin/env bash
# Fetch and build the standalone Kubernetes API server tier (apiextensions-apiserver + etcd +
# kubectl) from Debian sid's packages, WITHOUT installing anything: a private apt configuration
# downloads the dependency closure, dpkg-deb unpacks it into a cache folder outside the repo, and
# the API server is built there once per package version (GOPATH mode, offline).
#
#   scripts/k8s-apiserver.sh build    fetch + unpack + build when needed; prints the version root
#   scripts/k8s-apiserver.sh path     print the cached version root (no network); fails when none
#   scripts/k8s-apiserver.sh refresh  re-read sid's package lists, then build (a newer version
#                                     gets its own folder; older ones can be deleted)
#
# The version root holds bin/apiextensions-apiserver, bin/etcd, bin/kubectl and VERSION.
# Exit codes say who is at fault: 10 the archive (download/unpack: network, mirror, package
# names), 11 the archive's sources (they do not build together), 12 this script or its setup.
# Warm (a built version cached) `build` touches no network and takes well under a second.
set -euo pipefail

CACHE="${LEADFLOW_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leadflow/k8s}"
MIRROR="${LEADFLOW_K8S_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=(golang-k8s-apiextensions-apiserver-dev golang-go etcd-server kubernetes-client)
APT_DIR="$CACHE/apt"

archive_fault() { echo "k8s-apiserver: ARCHIVE problem (download/unpack, not our code): $*" >&2; exit 10; }
sources_fault() { echo "k8s-apiserver: the ARCHIVE's sources failed to build (not our code): $*" >&2; exit 11; }
our_fault() { echo "k8s-apiserver: setup problem in scripts/k8s-apiserver.sh: $*" >&2; exit 12; }

# Newest fully built version root, if any (a root counts only once its DONE stamp exists).
cached_root() {
  local stamp
  stamp=$(ls -1t "$CACHE"/v*/DONE 2>/dev/null | head -n1 || true)
  [[ -n "$stamp" ]] && dirname "$stamp"
}

apt_opts() {
  printf '%s\n' \
    -o "Dir::Etc::sourcelist=$APT_DIR/sources.list" -o "Dir::Etc::sourceparts=-" \
    -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::State::status=$APT_DIR/status" \
    -o "Dir::Cache=$APT_DIR/cache" -o "Dir::Etc::preferences=$APT_DIR/preferences" \
    -o "Dir::Etc::preferencesparts=-" -o "APT::Architecture=amd64" \
    -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1" -o "Acquire::Languages=none"
}

apt_update() {
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" || our_fault "cannot create $APT_DIR"
  # An empty status file: apt resolves as if nothing were installed, so the closure is complete.
  : >"$APT_DIR/status"
  : >"$APT_DIR/preferences"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR sid main" >"$APT_DIR/sources.list"
  mapfile -t opts < <(apt_opts)
  apt-get "${opts[@]}" -qq update >"$APT_DIR/update.log" 2>&1 \
    || archive_fault "apt-get update of sid failed; see $APT_DIR/update.log"
}

package_version() {
  mapfile -t opts < <(apt_opts)
  apt-cache "${opts[@]}" show --no-all-versions golang-k8s-apiextensions-apiserver-dev 2>/dev/null \
    | sed -n 's/^Version: //p' | head -n1
}

fetch_and_unpack() {
  local root="$1" debs="$1/debs" tree="$1/root"
  mapfile -t opts < <(apt_opts)
  mkdir -p "$debs" "$tree"
  local closure
  closure=$(apt-cache "${opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "${PACKAGES[@]}" 2>"$root/depends.log" \
    | grep -E '^[a-z0-9]' | sort -u) || archive_fault "dependency closure failed; see $root/depends.log"
  [[ -n "$closure" ]] || archive_fault "empty dependency closure for ${PACKAGES[*]}"
  echo "k8s-apiserver: downloading $(wc -w <<<"$closure") packages from sid" >&2
  # shellcheck disable=SC2086
  (cd "$debs" && apt-get "${opts[@]}" -qq download $closure) >"$root/download.log" 2>&1 \
    || archive_fault "apt-get download failed; see $root/download.log"
  local deb
  for deb in "$debs"/*.deb; do
    dpkg-deb -x "$deb" "$tree" 2>>"$root/unpack.log" || archive_fault "dpkg-deb -x $deb failed"
  done
}

build() {
  local root="$1" tree="$1/root"
  local goroot
  goroot=$(ls -1d "$tree"/usr/lib/go-1.* 2>/dev/null | sort -V | tail -n1)
  [[ -x "$goroot/bin/go" ]] || archive_fault "no Go toolchain under $tree/usr/lib/go-1.*"
  [[ -d "$tree/usr/share/gocode/src/k8s.io/apiextensions-apiserver" ]] \
    || archive_fault "k8s.io/apiextensions-apiserver sources missing under $tree/usr/share/gocode/src"
  mkdir -p "$root/bin" "$root/gocache"
  echo "k8s-apiserver: building apiextensions-apiserver with $(basename "$goroot") (several minutes, once per version)" >&2
  (
    cd "$tree/usr/share/gocode/src/k8s.io/apiextensions-apiserver"
    env -i PATH="$goroot/bin:/usr/bin:/bin" HOME="$root" GOROOT="$goroot" \
      GOPATH="$tree/usr/share/gocode" GOCACHE="$root/gocache" GO111MODULE=off GOPROXY=off \
      GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 GOTELEMETRY=off \
      "$goroot/bin/go" build -o "$root/bin/apiextensions-apiserver" .
  ) >"$root/build.log" 2>&1 || sources_fault "go build failed; see $root/build.log"
  install -m 0755 "$tree/usr/bin/etcd" "$root/bin/etcd" || archive_fault "etcd-server has no usr/bin/etcd"
  install -m 0755 "$tree/usr/bin/kubectl" "$root/bin/kubectl" || archive_fault "kubernetes-client has no usr/bin/kubectl"
  local b
  for b in apiextensions-apiserver etcd kubectl; do
    [[ -x "$root/bin/$b" ]] || archive_fault "$b missing after unpack/build"
  done
  # Only the three binaries (~200 MB) are needed from here on: the debs, the unpacked tree
  # (~2.5 GB) and the Go build cache (~1.4 GB) go.
  rm -rf "$root/debs" "$root/root" "$root/gocache"
}

ensure_built() {
  local version="$1" root
  root="$CACHE/v$version"
  if [[ -f "$root/DONE" ]]; then
    echo "$root"
    return
  fi
  rm -rf "$root"
  mkdir -p "$root"
  fetch_and_unpack "$root"
  build "$root"
  echo "$version" >"$root/VERSION"
  touch "$root/DONE"
  echo "$root"
}

mkdir -p "$CACHE" || our_fault "cannot create cache folder $CACHE"
exec 9>"$CACHE/.lock"
flock 9 || our_fault "cannot lock $CACHE/.lock"

case "${1:-build}" in
  path)
    root=$(cached_root) || true
    [[ -n "${root:-}" ]] || { echo "k8s-apiserver: nothing built yet under $CACHE (run: $0 build)" >&2; exit 1; }
    echo "$root"
    ;;
  build)
    root=$(cached_root) || true
    if [[ -n "${root:-}" ]]; then echo "$root"; exit 0; fi
    apt_update
    version=$(package_version)
    [[ -n "$version" ]] || archive_fault "sid has no golang-k8s-apiextensions-apiserver-dev"
    ensure_built "$version"
    ;;
  refresh)
    apt_update
    version=$(package_version)
    [[ -n "$version" ]] || archive_fault "sid has no golang-k8s-apiextensions-apiserver-dev"
    ensure_built "$version"
    ;;
  *)
    our_fault "unknown command ${1} (build, path or refresh)"
    ;;
esac
