#!/bin/sh
# Build tcpconf-gvisor (gVisor netstack + upper-tester agent) into zoo/gvisor/build/. Idempotent.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
pkgs="golang-go golang-gvisor-gvisor-dev"

missing=""
for p in $pkgs; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "zoo/gvisor: cannot build: missing Debian packages:$missing (install them as root with apt-get)" >&2
        exit 1
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2; then
        echo "zoo/gvisor: cannot build: apt-get install$missing failed" >&2
        exit 1
    fi
fi

version=$(dpkg-query -W -f '${Version}' golang-gvisor-gvisor-dev)
mkdir -p "$here/build"
cd "$here"
if ! GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= go build -trimpath \
        -ldflags "-X main.stackVersion=$version" -o build/tcpconf-gvisor . >&2; then
    echo "zoo/gvisor: cannot build: go build failed (see above)" >&2
    exit 1
fi
echo "zoo/gvisor: built $here/build/tcpconf-gvisor (gVisor netstack $version, $(go version | cut -d' ' -f3))"
