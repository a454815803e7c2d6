#!/bin/sh
# /init of the QEMU zoo guest (busybox). Brings up eth0 as the IUT's interface, applies the sysctls given on
# the kernel command line, then serves the upper-tester agent on the virtio-serial port "tcpconf.agent",
# one session per host connection, for ever. Messages go to the console (ttyS0, the launcher's console.log).
export PATH=/bin
say() { echo "tcpconf-init: $*" > /dev/console; }

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug
# No duplicate-address detection: the tester expects 2001:2::1 usable at once.
echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad
echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad
modprobe virtio_pci
modprobe virtio_net
modprobe virtio_console

ip link set lo up
ip link set eth0 address 02:00:00:00:00:01
ip link set eth0 up
ip addr add 198.18.0.1/24 dev eth0
ip -6 addr add 2001:2::1/64 dev eth0

# sysctl.KEY=VALUE arguments: the kernel applied them before /init already; apply them again now that eth0
# exists (net.ipv6.conf.eth0.* and the like), and report each one.
token=""
eval "set -- $(cat /proc/cmdline)"
for arg in "$@"; do
    case "$arg" in
    tcpconf.token=*) token=${arg#tcpconf.token=} ;;
    sysctl.*=*)
        kv=${arg#sysctl.}
        if sysctl -w "$kv" > /dev/null 2>&1; then say "sysctl $kv"; else say "sysctl $kv FAILED"; fi ;;
    esac
done

port=""
for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = tcpconf.agent ] && port=/dev/${p##*/}
done
[ -n "$port" ] || { say "no virtio-serial port named tcpconf.agent"; poweroff -f; }
dbg=/sys/kernel/debug/virtio-ports/${port##*/}
say "ready: eth0 $(cat /sys/class/net/eth0/address), agent on $port, uptime $(cut -d' ' -f1 /proc/uptime) s"

# While no client is connected to the host side, reads of the port return end-of-file at once, so the
# agent is started only once a client is there; with --once it exits when that client goes away.
while true; do
    until grep -q 'host_connected: 1' "$dbg"; do usleep 10000; done
    # The tester, and the broadcast and multicast peers the MUST-46 cases ask the guest to refuse.
    set -- --device "$port" --once --allow-connect 198.18.0.2 --allow-connect 2001:2::2 \
        --allow-connect 198.18.0.255 --allow-connect 224.0.0.1 --allow-connect ff02::1
    [ -z "$token" ] || set -- "$@" --token "$token"
    tcpconf-agent "$@"
    say "agent exited ($?)"
    usleep 10000
done
