#!/bin/bash
# demo.sh -- tcmud in a few minutes, on any Debian 12 host (no TCMU, no KVM needed): boots the
# project's QEMU VM (Debian's stock kernel with LIO/TCMU) and, narrated, starts tcmud with its
# default configuration, creates a LUN with Debian's targetcli-fb (through tcmud's D-Bus
# service), makes an ext4 filesystem on it, writes files, takes a live snapshot, clones it,
# attaches the clone as a second LUN, mounts it and shows the files.
#
# Usage: tests/vm/demo.sh [--no-build] [--tcmud BIN]
#   --no-build   use target/vm-bin/tcmud (or --tcmud BIN) as it is
#   --tcmud BIN  the tcmud binary to run in the guest
# Needs: root on Debian 12 with apt (qemu-system-x86 and busybox-static are installed when
# missing; the guest's kernel, targetcli-fb and tools are fetched with apt-get download and
# cached in ${XDG_CACHE_HOME:-$HOME/.cache}/tcmud-vm, ~160 MB the first time).
# The whole console is also saved to target/vm-logs/demo-<timestamp>.log.
set -euo pipefail
me=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$me/../.." && pwd)
BUILD=1 TCMUD=""
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) BUILD=0; shift;;
        --tcmud) TCMUD=$(readlink -f "$2"); BUILD=0; shift 2;;
        -h|--help) sed -n '2,15p' "$0"; exit 0;;
        *) echo "demo.sh: unknown argument $1" >&2; exit 2;;
    esac
done
bold() { printf '\033[1m%s\033[0m\n' "$*"; }
bold "tcmud demo: a user-space TCMU daemon serving thin volumes to the Linux SCSI target"
if [ "$BUILD" = 1 ]; then
    bold "Building tcmud (cargo build --release -p tcmud; a few minutes the first time)..."
    (cd "$repo" && cargo build --release -p tcmud)
    mkdir -p "$repo/target/vm-bin"
    strip --strip-debug -o "$repo/target/vm-bin/tcmud" "$repo/target/release/tcmud" 2>/dev/null ||
        cp -f "$repo/target/release/tcmud" "$repo/target/vm-bin/tcmud"
fi
TCMUD=${TCMUD:-$repo/target/vm-bin/tcmud}
[ -x "$TCMUD" ] || { echo "demo.sh: no tcmud binary at $TCMUD (drop --no-build)" >&2; exit 2; }
log=$repo/target/vm-logs/demo-$(date +%Y%m%d-%H%M%S).log
mkdir -p "$(dirname "$log")"
bold "Booting the VM (QEMU without KVM: about a minute before the guest speaks)..."
# The guest image gets Debian's targetcli-fb (a cached segment: downloaded once).
export VMLAB_TARGETCLI=1
set +e
"$me/run-vm.sh" --timeout 600 --log "$log" -b "$TCMUD" -x "$repo/dist/tcmud-dbus.conf" \
    "$me/guest/demo-guest.sh" 2>&1 |
    grep -av -e '^VMLAB' -e '^\[vm ' -e '^GUEST: ' -e '^\[ *[0-9]*\.[0-9]*\] '
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" = 0 ]; then
    bold "Done. Console log: $log"
else
    bold "The demo failed (status $rc); console log: $log"
fi
exit "$rc"
