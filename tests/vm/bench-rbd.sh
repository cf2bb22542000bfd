#!/bin/bash
# bench-rbd.sh -- benchmark (NOT part of the test suite): an RBD image served over the full
# kernel path (fio -> sd -> tcm_loop -> LIO -> TCMU -> daemon -> librbd -> Ceph) in ONE
# QEMU/TCG boot, tcmud (dev_config rbd/rbd/img, built with --features rbd) against Debian's
# tcmu-runner 1.5.4 with its handler_rbd.so, on the same single-node cluster (in the guest, on
# its loopback: guest/ceph-lib.sh) and the same image, one daemon at a time.
# fio libaio direct iodepth 32: 4k randread, 4k randwrite, 1M seq read, 1M seq write; each
# rep runs every workload on each backend in turn (order rotated every rep); median of N.
# The guest half, tests/vm/bench/rbd-guest.sh, lists the exact configuration.
# Prints IOPS (4k) or MB/s (1M) per backend (median, min-max), the ratio tcmud/tcmu-runner of
# the medians and the median of the per-rep ratios, and the CPU time per I/O of the daemon
# process, of the OSD process and of the whole guest (utime+stime deltas / I/Os).
# Goal (issue 17): tcmud >= 1.2x tcmu-runner's IOPS on every row, daemon CPU per I/O no higher.
#
# Usage: tests/vm/bench-rbd.sh [--no-build] [--tcmud BIN] [--size MB] [--runtime S] [--reps N]
#          [--smp N] [--mem MB] [--cache wb|wt] [--backends tcmud,runner[,librbd]]
#          [--workloads randread4k,randwrite4k,read1m,write1m] [--log TCMUD_LOG_FILTER]
#          [--tcmud-daemon KEY=VALUE,...]   (adds backend tcmudx: tcmud with these extra keys
#          in its [daemon] table, e.g. io_threads=64,io_jobs_per_backstore=32)
#          [--tcmud-base BIN]   (adds backend base: another tcmud build, e.g. main's, in the
#          same boot, for a before/after comparison)
#   defaults: image 128 MiB, runtime 10 s per fio run (plus 1 s ramp), 3 reps, 2 vCPUs,
#   3072 MiB guest RAM, wb (attrib/emulate_write_cache=1 on both).
#   --backends runner: tcmu-runner alone (no tcmud build needed).
#   --from-log FILE: no VM, print the report of an earlier run's console log.
# Numbers are from an emulated (TCG) guest where the Ceph daemons share the 2 vCPUs with the
# initiator and the TCMU daemon: compare the ratios, not the absolute values.
set -uo pipefail
me=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$me/../.." && pwd)
BUILD=1 TCMUD="" BASE="" SIZE=128 RT=10 REPS=3 SMP=2 MEM=3072 CACHE=wb LOGF="" FROM="" DKEYS=""
BACKENDS=tcmud,runner WORKLOADS=randread4k,randwrite4k,read1m,write1m
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) BUILD=0; shift;;
        --tcmud) TCMUD=$(readlink -f "$2"); shift 2;;
        --size) SIZE=$2; shift 2;;
        --runtime) RT=$2; shift 2;;
        --reps) REPS=$2; shift 2;;
        --smp) SMP=$2; shift 2;;
        --mem) MEM=$2; shift 2;;
        --cache) CACHE=$2; shift 2;;
        --backends) BACKENDS=$2; shift 2;;
        --workloads) WORKLOADS=$2; shift 2;;
        --log) LOGF=$2; shift 2;;
        --tcmud-daemon) DKEYS=$2; shift 2;;
        --tcmud-base) BASE=$(readlink -f "$2"); shift 2;;
        --from-log) FROM=$2; shift 2;;
        -h|--help) sed -n '2,26p' "$0"; exit 0;;
        *) echo "unknown argument $1" >&2; exit 2;;
    esac
done
if [ -n "$FROM" ]; then
    LOG=$FROM
    b=$(grep -a -m1 '^GUEST: bench: size' "$LOG") || { echo "no bench line in $LOG" >&2; exit 2; }
    REPS=$(echo "$b" | sed -n 's/.* reps \([0-9]*\) .*/\1/p')
    CACHE=$(echo "$b" | sed -n 's/.* cache \([a-z]*\) .*/\1/p')
    BACKENDS=$(echo "$b" | sed -n "s/.* backends '\([^']*\)'.*/\1/p" | tr ' ' ',')
    WORKLOADS=$(echo "$b" | sed -n "s/.* workloads '\([^']*\)'.*/\1/p" | tr ' ' ',')
else
    bins=()
    if [ -n "$DKEYS" ] && [[ ",$BACKENDS," != *,tcmudx,* ]]; then BACKENDS=$BACKENDS,tcmudx; fi
    if [ -n "$BASE" ] && [[ ",$BACKENDS," != *,base,* ]]; then BACKENDS=$BACKENDS,base; fi
    if [[ ",$BACKENDS," == *,tcmud,* ]] || [[ ",$BACKENDS," == *,tcmudx,* ]]; then
        if [ -z "$TCMUD" ]; then
            TCMUD=$repo/target/release/tcmud
            if [ "$BUILD" = 1 ]; then
                echo "== cargo build --release -p tcmud --features rbd"
                (cd "$repo" && cargo build --release -p tcmud --features rbd) || exit 2
            fi
        fi
        [ -x "$TCMUD" ] || { echo "no tcmud binary at $TCMUD" >&2; exit 2; }
        tmpbin=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-bench.XXXXXX")
        trap 'rm -rf "$tmpbin"' EXIT
        strip --strip-debug -o "$tmpbin/tcmud" "$TCMUD" 2>/dev/null || cp "$TCMUD" "$tmpbin/tcmud"
        bins=(-b "$tmpbin/tcmud")
    fi
    if [ -n "$BASE" ]; then
        [ -x "$BASE" ] || { echo "no tcmud binary at $BASE" >&2; exit 2; }
        [ -n "${tmpbin:-}" ] || { tmpbin=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-bench.XXXXXX"); trap 'rm -rf "$tmpbin"' EXIT; }
        strip --strip-debug -o "$tmpbin/tcmud-base" "$BASE" 2>/dev/null || cp "$BASE" "$tmpbin/tcmud-base"
        bins+=(-b "$tmpbin/tcmud-base")
    fi
    LOGDIR=$repo/target/vm-logs; mkdir -p "$LOGDIR"
    LOG=$LOGDIR/bench-rbd-$(date +%Y%m%d-%H%M%S).log
    NB=$(echo "$BACKENDS" | tr ',' '\n' | grep -c .) NW=$(echo "$WORKLOADS" | tr ',' '\n' | grep -c .)
    # per fio run RT+1 s plus start-up; per rep and backend a daemon start/stop and a LUN;
    # the cluster, the image fill
    TMO=$(( REPS * NB * (NW * (RT + 10) + 60) + SIZE * 2 + 600 ))
    ARGS="size=$SIZE rt=$RT reps=$REPS cache=$CACHE backends=$BACKENDS workloads=$WORKLOADS"
    [ -n "$LOGF" ] && ARGS="$ARGS log=$LOGF"
    [ -n "$DKEYS" ] && ARGS="$ARGS daemon=$DKEYS"
    echo "== one VM boot: $ARGS (timeout ${TMO}s), log $LOG"
    stat0=$(grep '^cpu ' /proc/stat)
    VMLAB_TEST_ARGS="$ARGS" "$me/run-vm.sh" --quiet --ceph --smp "$SMP" --mem "$MEM" --timeout "$TMO" \
        --log "$LOG" ${bins[@]+"${bins[@]}"} "$me/bench/rbd-guest.sh"
    rc=$?
    echo "$stat0 $(grep '^cpu ' /proc/stat)" | awk -v n="$(nproc)" '{
        for (i = 2; i <= 9; i++) { d[i] = $(i + 11) - $i; t += d[i] }
        if (t > 0) printf "HOST during the boot: %d CPUs, busy %.0f%% (steal included), steal %.1f%% (from /proc/stat)\n", n,
            100 * (t - d[5] - d[6]) / t, 100 * d[9] / t }' >> "$LOG"
    if [ $rc != 0 ]; then
        grep -a -E 'GUEST-FAIL|GUEST:|^BENCH|^----|ceph' "$LOG" | tail -n 60
        echo "benchmark failed (status $rc), log: $LOG"; exit 1
    fi
fi
grep -a '^GUEST: ' "$LOG" | grep -E 'bench:|ceph:|filled|max_sectors_kb' | sed 's/^GUEST: /   /'
grep -a '^HOST during' "$LOG" | sed 's/^/   /'
grep -a '^BENCH ' "$LOG" | awk -v reps="$REPS" -v cache="$CACHE" -v bl="$BACKENDS" -v wl="$WORKLOADS" '
    function sort(arr, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    }
    function median(arr, n) { sort(arr, n); return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2 }
    # med(KEY, FIELD) over the reps of KEY; also sets LO/HI
    function med(k, fld,   i, m, x, r) {
        m = 0; delete x
        for (i = 1; i <= n[k]; i++) if (V[k, i, fld] != "-") x[++m] = V[k, i, fld]
        if (!m) { LO = HI = 0; return "-" }
        r = median(x, m); LO = x[1]; HI = x[m]; return r
    }
    { k = $2 SUBSEP $3; i = ++n[k]; V[k, i, "iops"] = $5; V[k, i, "kib"] = $6; R[$2, $3, $4] = $6
      for (j = 7; j < NF; j++) {
          if ($j == "guest") V[k, i, "guest"] = $(j + 1)
          if ($j == "daemon") V[k, i, "daemon"] = $(j + 1)
          if ($j == "osd") V[k, i, "osd"] = $(j + 1)
      } }
    END {
        nw = split(wl, W, ","); nb = split(bl, B, ",")
        label["tcmud"] = "tcmud rbd"; label["runner"] = "tcmu-runner rbd"; label["tcmudx"] = "tcmud rbd +keys"; label["base"] = "tcmud base rbd"; label["librbd"] = "fio librbd, no daemon"
        printf "\nwrite cache: %s; median of %d runs per backend (min-max); 4k rows IOPS, 1m rows MB/s (MiB/s)\n", cache, reps
        printf "%-12s", "workload"
        for (bi = 1; bi <= nb; bi++) printf " | %-24s", label[B[bi]]
        for (bi = 1; bi <= nb; bi++) if (B[bi] != "runner") printf " | %-11s | %-20s", B[bi] "/run", "per-rep " B[bi] "/run"
        printf "\n"
        for (wi = 1; wi <= nw; wi++) {
            w = W[wi]; mb = (w ~ /1m$/); line = sprintf("%-12s", w)
            for (bi = 1; bi <= nb; bi++) {
                k = B[bi] SUBSEP w
                if (mb) { m = med(k, "kib"); line = line sprintf(" | %8.1f (%6.1f-%6.1f)", m / 1024, LO / 1024, HI / 1024) }
                else { m = med(k, "iops"); line = line sprintf(" | %8d (%6d-%6d)", m, LO, HI) }
                K[B[bi]] = med(k, "kib")
            }
            for (bi = 1; bi <= nb; bi++) {
                x = B[bi]; if (x == "runner") continue
                t = K[x]; r = K["runner"]
                line = line sprintf(" | %11s", (t != "" && t != "-" && r != "" && r != "-" && r > 0) ? sprintf("%.2fx", t / r) : "-")
                m = 0; delete z
                for (rr = 1; rr <= reps; rr++) {
                    a = R[x, w, rr]; c = R["runner", w, rr]
                    if (a != "" && c > 0) z[++m] = a / c
                }
                if (m) line = line sprintf(" | %5.2fx (%4.2f-%4.2f)  ", median(z, m), z[1], z[m])
                else line = line sprintf(" | %-20s", "-")
            }
            print line
        }
        printf "\nCPU per I/O, microseconds, median: daemon process / ceph-osd / whole guest\n%-12s", "workload"
        for (bi = 1; bi <= nb; bi++) printf " | %-24s", label[B[bi]]
        for (bi = 1; bi <= nb; bi++) if (B[bi] != "runner") printf " | %-13s", "daemon " B[bi] "/run"
        printf "\n"
        for (wi = 1; wi <= nw; wi++) {
            w = W[wi]; line = sprintf("%-12s", w)
            for (bi = 1; bi <= nb; bi++) {
                k = B[bi] SUBSEP w
                d = med(k, "daemon"); o = med(k, "osd"); g = med(k, "guest"); D[B[bi]] = d
                line = line sprintf(" | %6s / %6s / %6s", d, o, g)
            }
            for (bi = 1; bi <= nb; bi++) {
                x = B[bi]; if (x == "runner") continue
                t = D[x]; r = D["runner"]
                line = line sprintf(" | %13s", (t != "" && t != "-" && r != "" && r != "-" && r > 0) ? sprintf("%.2fx", t / r) : "-")
            }
            print line
        }
    }'
echo "per run (backend workload rep IOPS KiB/s guest-uptime clat p50/p99/max cpu):"
grep -a '^BENCH ' "$LOG" | sort -k2,2 -k3,3 -k4,4n | sed 's/^BENCH /   /'
echo "CPU ticks per thread name of each daemon and of ceph-osd, cumulative, after each backend's runs:"
grep -a '^THREADS ' "$LOG" | sed 's/^THREADS /   /'
echo "raw results: grep -a '^BENCH ' $LOG"
