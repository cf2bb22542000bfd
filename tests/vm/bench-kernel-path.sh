#!/bin/bash
# bench-kernel-path.sh -- benchmark (NOT part of the test suite): the full kernel path
# (fio -> sd -> tcm_loop -> LIO -> backstore) in ONE QEMU/TCG boot, comparing
#   tcmud on a thin volume, tcmud on a raw file (file//), Debian's tcmu-runner 1.5.4 with its
#   qcow handler on a raw image, and the kernel's own fileio backstore on the same kind of image.
# Same image size, hw_max_sectors=1024 / max_sectors_kb=512 and the same data-area settings for
# all; 4k randread, 4k randwrite, 1M seq read, 1M seq write, libaio direct iodepth 32,
# interleaved, median of N runs. Prints IOPS and MB/s per backend and the ratios
# tcmud/tcmu-runner and tcmud/fileio.
#
# Usage: tests/vm/bench-kernel-path.sh [--no-build] [--tcmud BIN] [--size MB] [--runtime S]
#                                       [--reps N] [--smp N]
#   defaults: size 192 MiB, runtime 5 s per fio run (plus 1 s ramp), 3 reps, 2 vCPUs.
# Numbers are from an emulated (TCG) guest: compare ratios, not absolute values.
set -uo pipefail
me=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$me/../.." && pwd)
BUILD=1 TCMUD="" SIZE=192 RT=5 REPS=3 SMP=2
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) BUILD=0; shift;;
        --tcmud) TCMUD=$(readlink -f "$2"); shift 2;;
        --size) SIZE=$2; shift 2;;
        --runtime) RT=$2; shift 2;;
        --reps) REPS=$2; shift 2;;
        --smp) SMP=$2; shift 2;;
        -h|--help) sed -n '2,16p' "$0"; exit 0;;
        *) echo "unknown argument $1" >&2; exit 2;;
    esac
done
if [ -z "$TCMUD" ]; then
    TCMUD=$repo/target/release/tcmud
    if [ "$BUILD" = 1 ]; then
        echo "== cargo build --release -p tcmud"
        (cd "$repo" && cargo build --release -p tcmud) || exit 2
    fi
fi
[ -x "$TCMUD" ] || { echo "no tcmud binary at $TCMUD" >&2; exit 2; }
# the guest gets the binary without debug info (the release profile keeps it)
tmpbin=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-bench.XXXXXX")
trap 'rm -rf "$tmpbin"' EXIT
strip --strip-debug -o "$tmpbin/tcmud" "$TCMUD" 2>/dev/null || cp "$TCMUD" "$tmpbin/tcmud"
TCMUD=$tmpbin/tcmud
LOGDIR=$repo/target/vm-logs; mkdir -p "$LOGDIR"
LOG=$LOGDIR/bench-kernel-path-$(date +%Y%m%d-%H%M%S).log
# 16 fio runs per rep, each RT+1 s plus fio start-up, plus boot and filling the LUNs
TMO=$(( REPS * 16 * (RT + 6) + 300 ))
echo "== one VM boot: size ${SIZE} MiB, ${RT}s per run, ${REPS} reps (timeout ${TMO}s), log $LOG"
VMLAB_TEST_ARGS="$SIZE $RT $REPS" "$me/run-vm.sh" --quiet --smp "$SMP" --mem 3072 --timeout "$TMO" \
    --log "$LOG" -b "$TCMUD" "$me/bench/kernel-path-guest.sh"
rc=$?
if [ $rc != 0 ]; then
    grep -a -E 'GUEST-FAIL|GUEST:' "$LOG" | tail -n 20
    echo "benchmark failed (status $rc), log: $LOG"; exit 1
fi
grep -a '^GUEST: ' "$LOG" | grep -E 'max_sectors_kb' | sed 's/^GUEST: /   /'
grep -a '^BENCH ' "$LOG" | awk -v reps="$REPS" '
    function median(arr, n,   i, j, t, a) {
        for (i = 1; i <= n; i++) a[i] = arr[i]
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { k = $2 SUBSEP $3; n[k]++; iops[k, n[k]] = $5; bw[k, n[k]] = $6 }
    END {
        split("randread4k randwrite4k read1m write1m", W, " ")
        split("thin file runner fileio", B, " ")
        for (wi = 1; wi <= 4; wi++) for (bi = 1; bi <= 4; bi++) {
            k = B[bi] SUBSEP W[wi]; m = n[k]
            for (i = 1; i <= m; i++) { x[i] = iops[k, i]; y[i] = bw[k, i] }
            I[k] = m ? median(x, m) : 0; M[k] = m ? median(y, m) / 1024 : 0
        }
        printf "\nmedian of %d interleaved runs; IOPS and MB/s (MiB/s) per backend\n", reps
        printf "%-12s | %-17s | %-17s | %-17s | %-17s | %-11s %-11s | %-11s %-11s\n", "workload",
               "tcmud thin", "tcmud file", "tcmu-runner qcow", "kernel fileio",
               "thin/runner", "file/runner", "thin/fileio", "file/fileio"
        for (wi = 1; wi <= 4; wi++) {
            w = W[wi]; line = sprintf("%-12s", w)
            for (bi = 1; bi <= 4; bi++) { k = B[bi] SUBSEP w; line = line sprintf(" | %7d %7.1fMB/s", I[k], M[k]) }
            t = I["thin" SUBSEP w]; f = I["file" SUBSEP w]; r = I["runner" SUBSEP w]; o = I["fileio" SUBSEP w]
            line = line sprintf(" | %10.2fx %10.2fx | %10.2fx %10.2fx", r ? t / r : 0, r ? f / r : 0, o ? t / o : 0, o ? f / o : 0)
            print line
        }
    }'
echo "raw results: grep '^BENCH ' $LOG"
