#!/usr/bin/env bash
# Install and build the target zoo (each zoo/<stack>/README.md says what it is). Needs root for apt.
set -euo pipefail
cd "$(dirname "$0")/.."
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slirp4netns passt musl-tools >/dev/null
for stack in gvisor pytcp lwip qemu; do
    if [ -x "zoo/$stack/build.sh" ] || [ -f "zoo/$stack/build.sh" ]; then
        bash "zoo/$stack/build.sh"
    fi
done
