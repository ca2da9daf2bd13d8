#!/usr/bin/env bash
# Point the test control plane at another Kubernetes release: rewrite hack/k8s/go.mod (require k8s.io/kubernetes
# vX.Y.Z and replace every staging module it lists with the published v0.Y.Z), hack/etcd/go.mod (the etcd
# version that release pins in build/dependencies.yaml) and K8S_VERSION in hack/cluster-bins.sh, then tidy.
#
#   hack/bump-kubernetes.sh v1.37.2
#
# The next `make cluster-bins` builds into a new cache folder (the folder name hashes these files).
set -euo pipefail

version="${1:?usage: $0 vX.Y.Z}"
[[ "$version" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "not a Kubernetes release tag: $version" >&2; exit 2; }
staging="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
hack="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

upstream="$(cd "$hack/k8s" && go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
go_directive="$(awk '$1 == "go" {print $2; exit}' "$upstream/go.mod")"
etcd="v$(awk '/name: "etcd"/ {getline; print $2; exit}' "$upstream/build/dependencies.yaml")"

{
    echo "// Kubernetes control-plane binaries for the Wattwise tests. One module per upstream project so their"
    echo "// dependency versions never mix. k8s.io/kubernetes is not meant to be imported, so every staging module it"
    echo "// replaces with ./staging/... is replaced here with the published v0.N.M of the same release."
    echo "module wattwise.dev/hack/k8s"
    echo
    echo "go $go_directive"
    echo
    awk '$1 == "godebug"' "$upstream/go.mod"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "replace ("
    # Staging modules are the k8s.io requirements at exactly v0.0.0 (pseudo-versions are real dependencies).
    awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$upstream/go.mod" | sort -u |
        while read -r module; do printf '\t%s => %s %s\n' "$module" "$module" "$staging"; done
    echo ")"
} > "$hack/k8s/go.mod"

cat > "$hack/etcd/go.mod" <<EOF
// etcd for the Wattwise test control plane, at the version Kubernetes $version pins (etcd ${etcd#v}).
module wattwise.dev/hack/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $etcd
EOF

sed -i "s/^K8S_VERSION=\"[^\"]*\"/K8S_VERSION=\"$version\"/" "$hack/cluster-bins.sh"
(cd "$hack/k8s" && go mod tidy)
(cd "$hack/etcd" && go mod tidy)
echo "now on Kubernetes $version (staging $staging, etcd $etcd); run \`make cluster-bins\` and the cluster tests" >&2
