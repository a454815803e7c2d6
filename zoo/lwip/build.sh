#!/bin/sh
# Builds the lwIP zoo target: build/tcpconf-lwip (lwIP 2.1.3 from Debian liblwip-dev + the portable C agent).
# Idempotent; installs liblwip-dev if it is missing. Exits non-zero with one line when the build is impossible.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$here/build/tcpconf-lwip"
fail() { echo "zoo/lwip/build.sh: cannot build: $*" >&2; exit 1; }

command -v gcc >/dev/null 2>&1 || fail "gcc not found (apt-get install gcc)"
if ! pkg-config --exists lwip 2>/dev/null; then
    command -v apt-get >/dev/null 2>&1 || fail "liblwip-dev is missing and apt-get is not available"
    apt-get -o DPkg::Lock::Timeout=600 install -y -q liblwip-dev pkg-config >/dev/null 2>&1 \
        || fail "apt-get install liblwip-dev failed"
fi
pkg-config --exists lwip || fail "pkg-config does not know lwip after installing liblwip-dev"
mkdir -p "$here/build"
# shellcheck disable=SC2046
gcc -O2 -Wall -Wextra -std=gnu99 -DTCPCONF_LWIP $(pkg-config --cflags lwip) \
    -o "$out.tmp" "$here/tcpconf_lwip.c" "$repo/agent/c/tcpconf_agent.c" $(pkg-config --libs lwip) -lpthread \
    || fail "compilation failed (see above)"
mv "$out.tmp" "$out"
echo "zoo/lwip: built $out (lwIP $(pkg-config --modversion lwip))"
