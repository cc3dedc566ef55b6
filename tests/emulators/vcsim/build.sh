#!/usr/bin/env bash
# Builds cloudmem-vcsim (our main.go over govmomi 0.24's simulator package, from Debian's packages, offline:
# GOPATH mode against /usr/share/gocode, no module download) into $1 (default
# ${CLOUDMEM_EMULATORS:-~/.cache/cloudmem/emulators}/vcsim). Idempotent: the binary is keyed by the hash of main.go
# and the Go version. Installs golang-go and golang-github-vmware-govmomi-dev with apt-get when missing and
# running as root; otherwise says what is missing and exits 0 (the vSphere tests then skip with that reason).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-${CLOUDMEM_EMULATORS:-$HOME/.cache/cloudmem/emulators}/vcsim}"
gocode=/usr/share/gocode
if ! command -v go >/dev/null 2>&1 || [ ! -d "$gocode/src/github.com/vmware/govmomi/simulator" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "emulators: installing golang-go and golang-github-vmware-govmomi-dev" >&2
        (apt-get install -y -qq golang-go golang-github-vmware-govmomi-dev >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq golang-go golang-github-vmware-govmomi-dev >/dev/null 2>&1; }) ||
            echo "emulators: apt-get install golang-go golang-github-vmware-govmomi-dev failed" >&2
    fi
fi
if ! command -v go >/dev/null 2>&1 || [ ! -d "$gocode/src/github.com/vmware/govmomi/simulator" ]; then
    echo "emulators: go or govmomi (Debian golang-github-vmware-govmomi-dev) missing; vcsim not built (vSphere tests will skip)" >&2
    exit 0
fi
key="$( (sha256sum "$here/main.go"; go version) | sha256sum | cut -c1-16)"
if [ -x "$out/cloudmem-vcsim" ] && [ -f "$out/.built-$key" ]; then
    exit 0
fi
mkdir -p "$out"
rm -f "$out"/.built-*
if (cd "$here" && GO111MODULE=off GOPATH="$gocode" GOFLAGS= GOCACHE="$out/.gocache" \
        go build -o "$out/cloudmem-vcsim.tmp" . >&2); then
    mv -f "$out/cloudmem-vcsim.tmp" "$out/cloudmem-vcsim"
    touch "$out/.built-$key"
    echo "emulators: cloudmem-vcsim built in $out" >&2
else
    echo "emulators: go build of tests/emulators/vcsim failed (vSphere tests will skip)" >&2
fi
exit 0
