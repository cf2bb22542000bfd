#!/bin/bash
# bench-many-luns.sh -- benchmark (NOT part of the test suite): many LUNs served by one
# daemon, tcmud against tcmu-runner, in ONE QEMU/TCG boot (guest half:
# tests/vm/bench/many-luns-guest.sh, which describes the steps). For each daemon: N TCMU
# backstores created in a burst (tcmud: thin volumes of one pool; tcmu-runner: raw sparse
# images through its qcow handler), exported as N tcm_loop LUNs, then one fio randwrite with
# crc32c verify over all N LUNs at once, a daemon restart (adoption) and a verify-only fio
# pass over every LUN. Records threads, fds and VmRSS of the daemon idle, after I/O and after
# adoption; the time to serve N ADDED events, to attach the LUNs, and to adopt N devices;
# per-LUN write IOPS (min / mean / max: of each job over its own runtime, and over the
# window where every job runs) and fio errors; then the time to remove the N LUNs
# and backstores. RSS is /proc/PID/smaps_rollup's (the page tables walked): VmRSS of
# /proc/PID/status is also logged, but on this kernel it lags behind for a process with
# many threads (each thread flushes its RSS count every 64 faults).
#
# Usage: tests/vm/bench-many-luns.sh [--no-build] [--tcmud BIN] [--n N] [--size MB] [--fio MB]
#          [--qd N] [--mem MB] [--smp N] [--cache wb|wt] [--backends tcmud,runner[,old]]
#          [--ring MB] [--tcmud-old BIN] [--log FILTER]
#   --ring MB: cmd_ring_size_mb of every device (the kernel allocates it up front, 8 MiB by
#   default; 1,000 LUNs: --ring 1 --mem 6144).
#   --tcmud-old BIN: a second tcmud build (e.g. main's) served as backend "old" in the same
#   boot (added to the backends when given).
#   --fio MB, or --fio NNNk for KiB. defaults: 64 LUNs of 16 MiB, 2 MiB written and verified per LUN, iodepth 4, 3072 MiB
#   guest RAM, 2 vCPUs. --from-log FILE: no VM, print the table of an earlier run's log.
# Numbers are from an emulated (TCG) guest: compare tcmud with tcmu-runner, not with hardware.
set -uo pipefail
me=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$me/../.." && pwd)
BUILD=1 TCMUD="" OLD="" CACHE=wb RING="" N=64 SIZE=16 FIOMB=2 QD=4 MEM=3072 SMP=2 BACKENDS=tcmud,runner LOGF="" FROM=""
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) BUILD=0; shift;;
        --tcmud) TCMUD=$(readlink -f "$2"); shift 2;;
        --tcmud-old) OLD=$(readlink -f "$2"); shift 2;;
        --cache) CACHE=$2; shift 2;;
        --ring) RING=$2; shift 2;;
        --n) N=$2; shift 2;;
        --size) SIZE=$2; shift 2;;
        --fio) FIOMB=$2; shift 2;;
        --qd) QD=$2; shift 2;;
        --mem) MEM=$2; shift 2;;
        --smp) SMP=$2; shift 2;;
        --backends) BACKENDS=$2; shift 2;;
        --log) LOGF=$2; shift 2;;
        --from-log) FROM=$2; shift 2;;
        -h|--help) sed -n '2,24p' "$0"; exit 0;;
        *) echo "unknown argument $1" >&2; exit 2;;
    esac
done
if [ -n "$FROM" ]; then
    LOG=$FROM
else
    if [ -z "$TCMUD" ]; then
        TCMUD=$repo/target/release/tcmud
        if [ "$BUILD" = 1 ]; then
            echo "== cargo build --release -p tcmud"
            (cd "$repo" && cargo build --release -p tcmud) || exit 2
        fi
    fi
    [ -x "$TCMUD" ] || { echo "no tcmud binary at $TCMUD" >&2; exit 2; }
    tmpbin=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-bench.XXXXXX")
    trap 'rm -rf "$tmpbin"' EXIT
    strip --strip-debug -o "$tmpbin/tcmud" "$TCMUD" 2>/dev/null || cp "$TCMUD" "$tmpbin/tcmud"
    EXTRA=()
    # the guest dumps the daemon's thread stacks with it when a phase stalls
    if command -v eu-stack >/dev/null; then
        EXTRA+=(-b "$(command -v eu-stack)")
    else
        echo "(no eu-stack on this host, apt-get install elfutils: a stall then shows kernel stacks only)"
    fi
    if [ -n "$OLD" ]; then
        strip --strip-debug -o "$tmpbin/tcmud-old" "$OLD" 2>/dev/null || cp "$OLD" "$tmpbin/tcmud-old"
        EXTRA+=(-b "$tmpbin/tcmud-old")
        case ",$BACKENDS," in *,old,*) ;; *) BACKENDS=$BACKENDS,old;; esac
    fi
    LOGDIR=$repo/target/vm-logs; mkdir -p "$LOGDIR"
    LOG=$LOGDIR/bench-many-luns-n$N-$(date +%Y%m%d-%H%M%S).log
    # creation, attach, two fio passes and adoption per daemon, a few seconds per LUN in TCG
    NB=$(echo "$BACKENDS" | tr ',' '\n' | grep -c .)
    TMO=$(( 600 + N * 4 * NB ))
    ARGS="n=$N size=$SIZE fio=$FIOMB qd=$QD cache=$CACHE backends=$BACKENDS"
    [ -n "$LOGF" ] && ARGS="$ARGS log=$LOGF"
    [ -n "$RING" ] && ARGS="$ARGS ring=$RING"
    echo "== one VM boot: $ARGS (timeout ${TMO}s), log $LOG"
    VMLAB_TEST_ARGS="$ARGS" "$me/run-vm.sh" --quiet --smp "$SMP" --mem "$MEM" --timeout "$TMO" \
        --log "$LOG" -b "$tmpbin/tcmud" "${EXTRA[@]}" "$me/bench/many-luns-guest.sh"
    rc=$?
    if [ $rc != 0 ]; then
        grep -a -E 'GUEST-FAIL|GUEST:|^MANY' "$LOG" | tail -n 40
        echo "benchmark failed (status $rc), log: $LOG"; exit 1
    fi
fi
grep -a '^GUEST: many-luns' "$LOG" | sed 's/^GUEST: /   /'
# The lines are "MANY <daemon> <what> key value ...": print them as they are, then a table.
grep -a '^MANY ' "$LOG" | sed 's/^MANY /   /'
grep -a '^MANY ' "$LOG" | awk '
    { b = $2; if (!(b in seen)) { seen[b] = 1; order[++nb] = b }
      if ($3 == "add_s") { A[b] = $4; C[b] = $6; T[b] = $8 }
      else if ($3 == "adopt_s") { D[b] = $4; VE[b] = $9; VL[b] = $7 }
      else if ($3 == "remove_s") { R[b] = $4 }
      else if ($3 == "served") { S[b] = $4 " of " $6 " devices served, then stopped (threads " $8 ", fds " $10 ", RSS " mib($12) " MiB)" }
      else if ($3 == "fio") { lo[b] = $9; me[b] = $11; hi[b] = $13; E[b] = $7; L[b] = $5 }
      else if ($3 == "window") { WS[b] = $5; WL[b] = $9; WM[b] = $11; WH[b] = $13 }
      else for (i = 4; i < NF; i += 2) V[b, $3, $i] = $(i + 1) }
    function mib(k) { return k == "" ? "?" : sprintf("%.1f", k / 1024) }
    END {
        printf "\n| daemon | threads idle / after I/O / adopted | fds | RSS MiB idle / after I/O / adopted | of it ring mappings after I/O | anon after I/O (THP) | add N (s) | attach N (s) | adopt N (s) | remove N (s) | IOPS per LUN min / mean / max | same, every job running (window s) | fio errors (write, verify) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        for (j = 1; j <= nb; j++) {
            b = order[j]
            if (b in S) { printf "| %s | %s |\n", b, S[b]; continue }
            printf "| %s | %s / %s / %s | %s / %s / %s | %s / %s / %s | %s | %s (%s) | %s | %s | %s | %s | %s / %s / %s (%.2f of mean) | %s / %s / %s (%s of mean, %s s) | %s, %s (%s LUNs) |\n", b,
                V[b, "idle", "threads"], V[b, "after_io", "threads"], V[b, "adopted", "threads"],
                V[b, "idle", "fds"], V[b, "after_io", "fds"], V[b, "adopted", "fds"],
                mib(V[b, "idle", "rss_kib"]), mib(V[b, "after_io", "rss_kib"]), mib(V[b, "adopted", "rss_kib"]),
                mib(V[b, "after_io", "uio_kib"]), mib(V[b, "after_io", "anon_kib"]), mib(V[b, "after_io", "thp_kib"]),
                A[b], T[b], D[b], R[b], lo[b], me[b], hi[b], me[b] ? lo[b] / me[b] : 0,
                WL[b], WM[b], WH[b], WM[b] + 0 ? sprintf("%.2f", WL[b] / WM[b]) : "-", WS[b], E[b], VE[b], L[b]
        }
    }'
echo "log: $LOG"
