#!/usr/bin/env bash
# Build kube-apiserver and etcd from the Go module proxy into a cache dir, for
# the Kubernetes integration tests (tests/k8s/apiserver.py).
#
# Usage: bash tests/k8s/build.sh          # build if the cache is stale; prints the cache dir
#        bash tests/k8s/build.sh --check  # print the cache dir if it is up to date, else exit 3
#        bash tests/k8s/build.sh --tidy   # re-run `go mod tidy` after editing wrapper/go.mod
# Env:   TETRAPIPE_K8S_BIN  cache dir (default $HOME/.cache/tetrapipe/k8s/<kubernetes version>)
#        GOFLAGS, GOPROXY, GOMODCACHE, GOCACHE are honoured as usual.
#
# Why a wrapper module: `go install k8s.io/kubernetes/cmd/kube-apiserver@v…`
# refuses (k8s.io/kubernetes's go.mod has replace directives pointing at its
# ./staging tree); wrapper/go.mod requires it and replaces every staging module
# by its published v0.<minor>.<patch> tag instead.
#
# Guarantee: on exit 0 the cache dir holds `kube-apiserver`, `etcd` and a
# marker `.key` equal to the hash of wrapper/{go.mod,go.sum,tools.go} and the
# build flags (not of this whole file: editing a comment must not cost a build). A cache whose marker matches is reused without touching the network
# or the Go toolchain; otherwise both binaries are built into a sibling temp
# dir and swapped in as a whole, so an interrupted build never leaves a cache
# that looks done. A cold build takes ~7 min on 2 cores (peak RSS ~1.8 GB);
# Go runs under `nice -n 19` so that it does not starve other work.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wrapper="$here/wrapper"

if [[ "${1:-}" == "--tidy" ]]; then
  (cd "$wrapper" && nice -n 19 go mod tidy)
  exit 0
fi

kube_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$wrapper/go.mod")"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' "$wrapper/go.mod")"
[[ -n "$kube_version" && -n "$etcd_version" ]] || { echo "build.sh: versions not found in wrapper/go.mod" >&2; exit 1; }
dest="${TETRAPIPE_K8S_BIN:-$HOME/.cache/tetrapipe/k8s/$kube_version}"

# "1.34" out of "v1.34.2": /version must report the real version, clients check it.
minor="$(echo "$kube_version" | cut -d. -f2)"
major="$(echo "$kube_version" | cut -d. -f1 | tr -d v)"
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
buildflags="-mod=readonly -trimpath"
want="$( (cat "$wrapper/go.mod" "$wrapper/go.sum" "$wrapper/tools.go"; echo "$buildflags $ldflags") \
        | sha256sum | cut -d' ' -f1)"

if [[ -f "$dest/.key" && "$(cat "$dest/.key")" == "$want" \
      && -x "$dest/kube-apiserver" && -x "$dest/etcd" ]]; then
  echo "$dest"
  exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
  echo "build.sh: no up-to-date kube-apiserver/etcd in $dest: run bash tests/k8s/build.sh (cold: ~7 min)" >&2
  exit 3
fi

command -v go >/dev/null || { echo "build.sh: go not found on PATH" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
tmp="$(mktemp -d "$dest.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

started=$SECONDS
cd "$wrapper"
# -mod=readonly: the committed go.sum is the pin; a drift is an error, not a silent update.
echo "build.sh: building kube-apiserver $kube_version (cold: ~7 min)" >&2
nice -n 19 go build $buildflags -ldflags="$ldflags" \
  -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
echo "build.sh: building etcd $etcd_version" >&2
nice -n 19 go build $buildflags -ldflags="-s -w" \
  -o "$tmp/etcd" go.etcd.io/etcd/server/v3
echo "$want" > "$tmp/.key"

rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "build.sh: built in $((SECONDS - started)) s" >&2
echo "$dest"
