#!/bin/sh
# Stand-in for the static C agent (used only while agent/c is absent): answers hello and bye on the port
# given with --device, and EINVAL/ENOTSUP to anything else. Enough to measure boot time and check the wiring.
dev=""
while [ $# -gt 0 ]; do
    case "$1" in --device) dev=$2; shift ;; esac
    shift
done
exec 3<> "$dev" || exit 1
platform="Linux-$(uname -r)-$(uname -m)"
while IFS= read -r line <&3; do
    id=$(echo "$line" | sed -n 's/.*"id" *: *\([0-9][0-9]*\).*/\1/p')
    [ -n "$id" ] || id=null
    case "$line" in
    *'"op"'*:*'"hello"'*)
        printf '{"id":%s,"ok":true,"protocol":1,"implementation":"qemu-standin/0","platform":"%s","ops":["hello","bye"]}\n' \
            "$id" "$platform" >&3 ;;
    *'"op"'*:*'"bye"'*)
        printf '{"id":%s,"ok":true}\n' "$id" >&3
        exit 0 ;;
    *)
        printf '{"id":%s,"ok":false,"error":"ENOTSUP","message":"stand-in agent: hello and bye only"}\n' "$id" >&3 ;;
    esac
done
