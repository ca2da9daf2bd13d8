#!/usr/bin/env bash
# Build the Helm v3 CLI from its Go module into a cache folder outside the checkout (shared by every clone).
#
#   hack/helm-bin.sh path    print where the helm binary lives (nothing is built)
#   hack/helm-bin.sh build   build it when missing (idempotent, locked), then print its path
#
# The binary lands in ${WATTWISE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wattwise/bin}/helm-<version>/helm.
# The build goes to a temporary folder renamed into place when complete, so a concurrent caller never sees a
# half-written binary.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"   # latest v3 whose go.mod accepts the installed Go (1.26)

helm_dir() {
    echo "${WATTWISE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wattwise/bin}/helm-${HELM_VERSION}"
}

build() {
    local dir tmp
    dir="$(helm_dir)"
    [[ -x "$dir/helm" ]] && { echo "$dir/helm"; return; }
    command -v go >/dev/null 2>&1 || { echo "helm ${HELM_VERSION}: needs Go to build (no \`go\` on PATH)" >&2; exit 2; }
    mkdir -p "$(dirname "$dir")"
    exec 9>"$dir.lock"
    flock 9
    if [[ ! -x "$dir/helm" ]]; then
        tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
        trap 'rm -rf "$tmp"' EXIT
        echo "building helm ${HELM_VERSION} into $dir (a few minutes on a cold Go cache)" >&2
        GOBIN="$tmp" GOFLAGS="-trimpath" CGO_ENABLED=0 \
            go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
            "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
        rm -rf "$dir"
        mv "$tmp" "$dir"
        trap - EXIT
    fi
    echo "$dir/helm"
}

case "${1:-}" in
    path) echo "$(helm_dir)/helm" ;;
    build) build ;;
    *) echo "usage: $0 path|build" >&2; exit 2 ;;
esac
