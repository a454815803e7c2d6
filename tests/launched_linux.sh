#!/usr/bin/env bash
# A launched target for the project's tests that needs nothing beyond the kernel: inside the namespace the suite
# created, a veth pair whose "eth0" end the namespace's own Linux kernel owns (198.18.0.1, 2001:2::1) and whose
# "lt0" end the tester uses (no address, IPv6 off); then the reference agent on this script's stdio.
# Usage: launched_linux.sh PYTHON AGENT_PY [agent options...]
set -euo pipefail
python=$1 agent=$2
shift 2
ip link set lo up
ip link add lt0 type veth peer name eth0
sysctl -q -w net.ipv6.conf.lt0.disable_ipv6=1
ip link set lt0 up
ip link set eth0 address 02:00:00:00:00:01 up
ip addr add 198.18.0.1/24 dev eth0
ip addr add 2001:2::1/64 dev eth0 nodad
ethtool -K eth0 tx off tso off gso off >/dev/null
exec "$python" -u "$agent" --stdio "$@"
