#!/bin/bash
# bench-xcopy.sh -- EXTENDED COPY vs dd through the initiator, in one QEMU/TCG boot: a written
# thin volume copied to another LUN of the same pool (bench/xcopy-guest.sh says how).
#   tests/vm/bench-xcopy.sh [--size MiB] [--tcmud BIN]   (default 1024 MiB, target/release/tcmud)
set -u
me=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$me/../.." && pwd)
SIZE=1024 TCMUD=$repo/target/release/tcmud
while [ $# -gt 0 ]; do
    case $1 in
        --size) SIZE=$2; shift 2;;
        --tcmud) TCMUD=$(readlink -f "$2"); shift 2;;
        *) echo "usage: $0 [--size MiB] [--tcmud BIN]" >&2; exit 2;;
    esac
done
[ -x "$TCMUD" ] || { echo "no tcmud binary at $TCMUD (cargo build --release -p tcmud)" >&2; exit 2; }
tmpbin=$(mktemp -d); trap 'rm -rf "$tmpbin"' EXIT
strip --strip-debug -o "$tmpbin/tcmud" "$TCMUD" 2>/dev/null || cp "$TCMUD" "$tmpbin/tcmud"
LOGDIR=$repo/target/vm-logs; mkdir -p "$LOGDIR"
LOG=$LOGDIR/bench-xcopy-$(date +%Y%m%d-%H%M%S).log
# the pool lives on the guest's tmpfs: source + dd copy + metadata in RAM
MEM=$(( SIZE * 3 + 1536 ))
echo "== one VM boot: size=${SIZE} MiB, guest RAM ${MEM} MiB, log $LOG"
VMLAB_TEST_ARGS="size=$SIZE" "$me/run-vm.sh" --quiet --mem "$MEM" --timeout $(( SIZE + 600 )) \
    --log "$LOG" -b "$tmpbin/tcmud" "$me/bench/xcopy-guest.sh"
rc=$?
grep -a -E '^BENCH|GUEST-FAIL' "$LOG"
[ $rc = 0 ] || { echo "benchmark failed (status $rc), log: $LOG"; exit 1; }
