#!/usr/bin/env bash
# Build Docker Engine 29 (moby v2), containerd v2 and runc from the Go module
# proxy, once per machine, for the end-to-end matrix and `make bench`.
#
#   scripts/engine.sh          build if missing; print the bin directory
#   scripts/engine.sh --path   print the bin directory only (exit 1 if not built)
#
# The binaries are cached OUTSIDE the checkout, under a directory keyed by
# every pinned version and build flag below, so a fresh clone on a machine
# that built them before pays nothing, and a change of pin builds afresh.
# DIVDS_ENGINE_CACHE overrides the cache root (default /var/cache/divds).
#
# Nothing here starts a daemon: test/harness does that, with private
# sockets, roots and configuration.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH GOFLAGS=-buildvcs=false

# Pinned. Docker 29 is the moby v2 module: v2.0.0-beta.24 reports
# 29-2.0.0-beta.24, API 1.56 (minimum 1.40).
MOBY_VERSION=v2.0.0-beta.24
CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
# The tags Docker's own static build uses; btrfs is left out because its
# driver is the one cgo user that needs headers. CGO off: static binaries.
MOBY_TAGS="netgo osusergo static_build nri_no_wasm exclude_graphdriver_btrfs"
CONTAINERD_TAGS="no_btrfs no_devmapper no_zfs no_aufs"

key=$(printf '%s\n' "$MOBY_VERSION" "$CONTAINERD_VERSION" "$RUNC_VERSION" "$MOBY_TAGS" "$CONTAINERD_TAGS" "$(go env GOVERSION)" | sha256sum | cut -c1-12)
root=${DIVDS_ENGINE_CACHE:-/var/cache/divds}
dir=$root/docker29-${MOBY_VERSION#v}-containerd-${CONTAINERD_VERSION#v}-runc-${RUNC_VERSION#v}-$key
want=(dockerd docker-proxy containerd containerd-shim-runc-v2 runc)

complete() { local b; for b in "${want[@]}"; do [ -x "$1/$b" ] || return 1; done; }

if [ "${1:-}" = --path ]; then complete "$dir/bin" && { echo "$dir/bin"; exit 0; }; exit 1; fi
if complete "$dir/bin"; then echo "$dir/bin"; exit 0; fi

mkdir -p "$root"
# One builder at a time; a second waits and then finds the result.
exec 9>"$root/.build.lock"
flock 9
if complete "$dir/bin"; then echo "$dir/bin"; exit 0; fi

if ! pkg-config --exists libseccomp 2>/dev/null; then
	echo "engine: libseccomp-dev is missing (make deps installs it)" >&2
	exit 1
fi
tmp=$(mktemp -d "$root/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s)
step() { echo "engine: $* ($(($(date +%s) - t0))s)" >&2; }

step "dockerd, docker-proxy from github.com/moby/moby/v2@$MOBY_VERSION"
CGO_ENABLED=0 GOBIN=$tmp/bin go install -trimpath -tags "$MOBY_TAGS" \
	-ldflags "-w -X github.com/moby/moby/v2/dockerversion.Version=29-${MOBY_VERSION#v} -X github.com/moby/moby/v2/dockerversion.GitCommit=modproxy" \
	"github.com/moby/moby/v2/cmd/dockerd@$MOBY_VERSION" "github.com/moby/moby/v2/cmd/docker-proxy@$MOBY_VERSION" >&2

step "containerd, containerd-shim-runc-v2 from github.com/containerd/containerd/v2@$CONTAINERD_VERSION"
CGO_ENABLED=0 GOBIN=$tmp/bin go install -trimpath -tags "$CONTAINERD_TAGS" \
	-ldflags "-w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION -X github.com/containerd/containerd/v2/version.Revision=modproxy" \
	"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" >&2

step "runc $RUNC_VERSION (cgo, seccomp)"
CGO_ENABLED=1 GOBIN=$tmp/bin go install -trimpath -tags seccomp -ldflags "-X main.version=${RUNC_VERSION#v}" \
	"github.com/opencontainers/runc@$RUNC_VERSION" >&2

complete "$tmp/bin"
printf 'moby %s\ncontainerd %s\nrunc %s\ngo %s\nbuilt %s\n' "$MOBY_VERSION" "$CONTAINERD_VERSION" "$RUNC_VERSION" \
	"$(go env GOVERSION)" "$(date -u +%FT%TZ)" >"$tmp/VERSIONS"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
step "done: $dir/bin"
echo "$dir/bin"
