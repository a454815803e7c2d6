#!/usr/bin/env bash
# The libslirp target (Debian slirp4netns, BSD-derived TCP): run by the suite inside the target namespace.
# slirp4netns puts a tap into the link namespace (LINK_NS, where the tester plays the guest 198.18.2.100)
# and maps the guest's gateway 198.18.2.2 to this namespace's loopback, where the reference agent's
# listeners wait: the TCP that answers the tester is libslirp's. IPv4 only (its IPv6 prefix is fixed).
# Usage: launch.sh WORKDIR LINK_NS PYTHON AGENT_PY [agent options...]; the agent speaks on this script's stdio.
set -euo pipefail
workdir=$1 link_ns=$2 python=$3 agent=$4
shift 4
ip link set lo up
slirp4netns --netns-type=path --cidr 198.18.2.0/24 --disable-dns --mtu 1500 \
    "/run/netns/$link_ns" tap0 >"$workdir/slirp.log" 2>&1 </dev/null &
for _ in $(seq 100); do   # slirp4netns creates the tap; the tester needs it up, and the link kernel silent
    if ip -n "$link_ns" link set tap0 up 2>/dev/null; then
        ip netns exec "$link_ns" sysctl -q -w net.ipv6.conf.tap0.disable_ipv6=1
        break
    fi
    sleep 0.05
done
exec "$python" -u "$agent" --stdio "$@"
