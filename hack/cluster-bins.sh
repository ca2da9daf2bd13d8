#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-scheduler, kubectl, kwok) from their Go modules
# into a cache folder outside the checkout, so every clone on a machine shares one build.
#
#   hack/cluster-bins.sh dir     print the folder the binaries live in (nothing is built)
#   hack/cluster-bins.sh build   build what is missing, then print the folder
#
# The folder is ${WATTWISE_BIN_DIR:-$HOME/.cache/wattwise/bin/k8s-<version>-<hash>}, where <hash> covers the
# Go sources, go.mod/go.sum and the pinned versions: a change to any of them gets a fresh folder, and an
# unchanged tree does no work at all (not even a `go` call, so prebuilt binaries serve a machine without Go). Builds land in a temporary folder that is renamed
# into place only when complete, under a lock, so concurrent callers never see a half-built set.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION="v1.37.2"      # must match hack/k8s/go.mod
KWOK_VERSION="v0.8.0"      # kwok release whose go.mod accepts the installed Go
BINARIES=(etcd kube-apiserver kube-scheduler kubectl kwok)

source_hash() {
    # Only what decides the binaries' content; sorted so the hash does not depend on file order.
    {
        (cd "$HACK_DIR" && find k8s etcd -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) \
            -print0 | sort -z | xargs -0 sha256sum)
        echo "kwok $KWOK_VERSION k8s $K8S_VERSION"
    } | sha256sum | cut -c1-12
}

bin_dir() {
    if [[ -n "${WATTWISE_BIN_DIR:-}" ]]; then
        echo "$WATTWISE_BIN_DIR"
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/wattwise/bin/k8s-${K8S_VERSION}-$(source_hash)"
    fi
}

complete() {
    local dir="$1" b
    for b in "${BINARIES[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

build_into() {
    local out="$1"
    local ldflags="-s -w"
    ldflags+=" -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=$(echo "$K8S_VERSION" | cut -d. -f1 | tr -d v)"
    ldflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
    ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
    ldflags+=" -X k8s.io/component-base/version.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    export GOFLAGS="-trimpath -mod=readonly" CGO_ENABLED=0
    echo "building etcd into $out" >&2
    (cd "$HACK_DIR/etcd" && go build -ldflags "-s -w" -o "$out/etcd" .)
    echo "building kube-apiserver, kube-scheduler, kubectl ${K8S_VERSION} into $out" >&2
    (cd "$HACK_DIR/k8s" && go build -ldflags "$ldflags" -o "$out/" ./cmd/...)
    echo "building kwok ${KWOK_VERSION} into $out" >&2
    GOBIN="$out" GOFLAGS="-trimpath" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
}

build() {
    local dir; dir="$(bin_dir)"
    if complete "$dir"; then echo "$dir"; return; fi
    if ! command -v go >/dev/null 2>&1; then
        echo "cluster-bins: Go is not installed and $dir holds no prebuilt binaries" >&2
        exit 3
    fi
    mkdir -p "$(dirname "$dir")"
    exec 9>"$dir.lock"
    flock 9
    if ! complete "$dir"; then          # someone else may have finished while we waited
        local tmp; tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
        trap 'rm -rf "$tmp"' EXIT
        local start=$SECONDS
        build_into "$tmp"
        rm -rf "$dir"
        mv "$tmp" "$dir"
        trap - EXIT
        echo "cluster-bins: built in $((SECONDS - start)) s" >&2
    fi
    echo "$dir"
}

case "${1:-build}" in
    dir) bin_dir ;;
    build) build ;;
    versions) echo "kubernetes=$K8S_VERSION kwok=$KWOK_VERSION" ;;
    *) echo "usage: $0 dir|build|versions" >&2; exit 2 ;;
esac
