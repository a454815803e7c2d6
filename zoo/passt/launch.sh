#!/usr/bin/env bash
# The passt target (Debian passt): run by the suite inside the target namespace it created.
# passt copies the addresses and routes of an upstream interface; the tester plays passt's guest
# (198.18.3.2 / 2001:2:3::2) on the UNIX socket, and the guest's gateway (198.18.3.1 / 2001:2:3::1) is
# mapped by passt to this namespace's loopback, where the reference agent's listeners wait. So the TCP
# that answers the tester is passt's own (it terminates the guest's connection and opens one on the host).
# Usage: launch.sh WORKDIR PYTHON AGENT_PY [agent options...]; the agent speaks on this script's stdio.
set -euo pipefail
workdir=$1 python=$2 agent=$3
shift 3
ip link set lo up
ip link add up0 type veth peer name up1   # a stand-in upstream link (nothing is on the other end)
ip link set up1 up
ip link set up0 up
ip addr add 198.18.3.2/24 dev up0
ip -6 addr add 2001:2:3::2/64 dev up0 nodad
ip route add default via 198.18.3.1 dev up0 onlink
ip -6 route add default via 2001:2:3::1 dev up0 onlink
# passt drops root for nobody before it binds its socket: give it a directory it may write.
install -d -m 0755 -o nobody "$workdir/passt"
passt -f -e -s "$workdir/passt/passt.sock" -t none -u none --no-dhcp --no-dhcpv6 --no-ra --no-dhcp-dns \
    >"$workdir/passt.log" 2>&1 </dev/null &
exec "$python" -u "$agent" --stdio "$@"
