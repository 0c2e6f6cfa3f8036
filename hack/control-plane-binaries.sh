#!/usr/bin/env bash
# Provide etcd, kube-apiserver and kube-controller-manager for the test harness and the sandbox.
#
# Order of preference (why: users with envtest assets or their own builds should not pay for a build):
#   1. $KUBEBUILDER_ASSETS holding all three binaries;
#   2. all three on $PATH;
#   3. a cached build under $CLUSTERNET_CACHE (default ~/.cache/clusternet/k8s-<version>);
#   4. on Debian: build kube-apiserver and kube-controller-manager from Debian's kubernetes source package
#      (etcd comes from the etcd-server package).
# Prints the directory holding the three binaries on its last line of stdout; progress goes to stderr.
set -euo pipefail

K8S_DEB_VERSION="1.20.5+really1.20.2"
CACHE_ROOT="${CLUSTERNET_CACHE:-$HOME/.cache/clusternet}"
CACHE_DIR="$CACHE_ROOT/k8s-${K8S_DEB_VERSION}"
BINS=(etcd kube-apiserver kube-controller-manager)

log() { echo "[control-plane-binaries] $*" >&2; }

have_all_in() {
  local dir=$1
  for b in "${BINS[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && have_all_in "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi

path_dir=""
if command -v kube-apiserver >/dev/null && command -v kube-controller-manager >/dev/null && command -v etcd >/dev/null; then
  mkdir -p "$CACHE_ROOT/path-links"
  for b in "${BINS[@]}"; do ln -sf "$(command -v "$b")" "$CACHE_ROOT/path-links/$b"; done
  echo "$CACHE_ROOT/path-links"; exit 0
fi

if have_all_in "$CACHE_DIR"; then
  echo "$CACHE_DIR"; exit 0
fi

if [[ ! -f /etc/debian_version ]]; then
  cat >&2 <<MSG
No control-plane binaries found and this is not Debian, so they cannot be built here.
Provide etcd, kube-apiserver and kube-controller-manager (Kubernetes >= 1.20) one of these ways:
  - export KUBEBUILDER_ASSETS=/path/to/dir/with/the/three/binaries   (e.g. from setup-envtest)
  - put them on PATH
  - copy them into $CACHE_DIR
MSG
  exit 3
fi

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

# deb-src entries mirroring the enabled Debian sources, so `apt-get source kubernetes` works.
if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/ ; then
  log "adding deb-src entries"
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      | $SUDO tee /etc/apt/sources.list.d/clusternet-src.sources >/dev/null
  elif [[ -f /etc/apt/sources.list ]]; then
    grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' \
      | $SUDO tee /etc/apt/sources.list.d/clusternet-src.list >/dev/null
  fi
fi

log "installing build dependencies (golang-go etcd-server rsync jq ...)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq golang-go etcd-server rsync jq dpkg-dev \
  golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev >&2

work="$CACHE_ROOT/build"
rm -rf "$work"; mkdir -p "$work"
cd "$work"
log "fetching Debian kubernetes source $K8S_DEB_VERSION"
apt-get source --download-only "kubernetes=$K8S_DEB_VERSION" >&2 || apt-get source --download-only kubernetes >&2
dpkg-source --no-check -x kubernetes_*.dsc src >&2
cd src

# A Go >= 1.18 build of this tree crashes at runtime in the vendored reflect2 (fatal error: fault in
# UnsafeMapType.UnsafeIterate) on the first custom-resource write; Debian's newer copies fix it.
for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
  rm -rf "vendor/$pkg"; mkdir -p "vendor/$pkg"
  cp -r "/usr/share/gocode/src/$pkg/." "vendor/$pkg/"
  find "vendor/$pkg" -name '*_test.go' -delete
done

mkdir -p .go/src/k8s.io
ln -sfn ../../.. .go/src/k8s.io/kubernetes
log "building kube-apiserver and kube-controller-manager (about 8 minutes on 2 cores)"
export GOPATH="$PWD/.go" CGO_ENABLED=0 GO111MODULE=off GOFLAGS=
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2

mkdir -p "$CACHE_DIR.tmp"
cp _output/bin/kube-apiserver _output/bin/kube-controller-manager "$CACHE_DIR.tmp/"
ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$CACHE_DIR.tmp/etcd"
rm -rf "$CACHE_DIR"; mv "$CACHE_DIR.tmp" "$CACHE_DIR"
cd /; rm -rf "$work"
log "binaries cached in $CACHE_DIR"
echo "$CACHE_DIR"
