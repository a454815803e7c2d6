#!/usr/bin/env bash
# Build the QEMU zoo target: a Debian Linux 6.1 cloud kernel and a busybox initramfs whose /init brings up
# eth0 and runs the static C agent on a virtio-serial port. Idempotent; see README.md.
#
# Usage: zoo/qemu/build.sh [AGENT_SRC_DIR]    (default: agent/c of this repository)
# Outputs: zoo/qemu/build/{vmlinuz,initramfs.gz,kernel-version,agent-kind}
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
agent_src=${1:-$repo/agent/c}
out=$here/build
mkdir -p "$out"

die() { echo "zoo/qemu/build.sh: $*" >&2; exit 1; }
[ $# -eq 0 ] || [ -f "$agent_src/tcpconf_agent.c" ] || die "no tcpconf_agent.c in $agent_src"
# An ELF executable without a program interpreter: runs in the initramfs, which has no libc.
is_static() { readelf -h "$1" >/dev/null 2>&1 && ! readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'; }

# 1. Host packages (apt may be busy with other work on this machine: wait for its lock).
if ! command -v qemu-system-x86_64 >/dev/null || [ ! -x /bin/busybox ] || ! /bin/busybox --list | grep -qx depmod; then
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install qemu-system-x86 busybox-static"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        qemu-system-x86 busybox-static >/dev/null || die "apt-get install qemu-system-x86 busybox-static failed"
fi
command -v readelf >/dev/null || die "readelf missing (apt-get install binutils)"
is_static /bin/busybox || die "/bin/busybox is not static (install busybox-static, not busybox)"

# 2. Kernel: the newest linux-image-6.1.0-NN-cloud-amd64 apt knows, unless one was already fetched.
if [ ! -s "$out/kernel-package" ]; then
    pkg=$(apt-cache search --names-only '^linux-image-6.1.0-[0-9]+-cloud-amd64$' | cut -d' ' -f1 | sort -V | tail -1)
    [ -n "$pkg" ] || die "no linux-image-6.1.0-NN-cloud-amd64 in the apt lists (try apt-get update)"
    echo "$pkg" > "$out/kernel-package"
fi
pkg=$(cat "$out/kernel-package")
kver=${pkg#linux-image-}
deb=$(ls "$out"/"${pkg}"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
    (cd "$out" && apt-get download "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) \
        || die "apt-get download $pkg failed"
    deb=$(ls "$out"/"${pkg}"_*.deb | head -1)
fi
kx=$out/kernel-x
if [ ! -f "$kx/boot/vmlinuz-$kver" ]; then
    rm -rf "$kx"
    dpkg-deb -x "$deb" "$kx"
    busybox depmod -b "$kx" "$kver"
fi
cp "$kx/boot/vmlinuz-$kver" "$out/vmlinuz"
echo "$kver" > "$out/kernel-version"

# 3. The agent: the static C agent if its source is there, else a shell stand-in that only says hello.
stage=$out/initramfs
rm -rf "$stage"
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,etc,lib/modules/"$kver"}
if [ -f "$agent_src/tcpconf_agent.c" ]; then
    rm -rf "$out/agent-build"
    cp -r "$agent_src" "$out/agent-build"          # build out of tree: never write into the source dir
    make -s -C "$out/agent-build" clean >/dev/null 2>&1 || true   # no binaries copied from the source dir
    make -s -C "$out/agent-build" static >&2 || die "make static of the C agent in $agent_src failed"
    agent_bin=""
    for pattern in 'tcpconf[-_]agent*static*' 'tcpconf[-_]agent*'; do
        for f in $(find "$out/agent-build" -maxdepth 2 -type f -name "$pattern" -perm -u+x | LC_ALL=C sort); do
            if [ -z "$agent_bin" ] && is_static "$f"; then agent_bin=$f; fi
        done
    done
    [ -n "$agent_bin" ] || die "make static in $agent_src produced no statically linked tcpconf-agent"
    cp "$agent_bin" "$stage/bin/tcpconf-agent"
    echo c-agent > "$out/agent-kind"
else
    cp "$here/standin-agent.sh" "$stage/bin/tcpconf-agent"
    echo standin > "$out/agent-kind"
    echo "zoo/qemu/build.sh: no C agent at $agent_src/tcpconf_agent.c: using the hello-only stand-in" >&2
fi
chmod 755 "$stage/bin/tcpconf-agent"

# 4. Busybox, the modules virtio_net and virtio_console need (closure from modules.dep), /init.
cp /bin/busybox "$stage/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$stage/bin/$applet"
done
moddir=$kx/lib/modules/$kver
mods=""
for m in virtio_pci virtio_net virtio_console; do
    line=$(grep -E "/$m\.ko:" "$moddir/modules.dep") || die "module $m not in $pkg"
    mods="$mods ${line%%:*} ${line#*:}"
done
for rel in $mods; do
    mkdir -p "$stage/lib/modules/$kver/$(dirname "$rel")"
    cp "$moddir/$rel" "$stage/lib/modules/$kver/$rel"
done
cp "$moddir"/modules.{order,builtin} "$stage/lib/modules/$kver/"
busybox depmod -b "$stage" "$kver"
install -m 755 "$here/init.sh" "$stage/init"
(cd "$stage" && find . | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -6 > "$out/initramfs.gz.new"
mv "$out/initramfs.gz.new" "$out/initramfs.gz"
echo "zoo/qemu: built $out/vmlinuz ($kver) and $out/initramfs.gz (agent: $(cat "$out/agent-kind"))"
