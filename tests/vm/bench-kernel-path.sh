#!/bin/bash
# bench-kernel-path.sh -- benchmark (NOT part of the test suite): the full kernel path
# (fio -> sd -> tcm_loop -> LIO -> backstore) in ONE QEMU/TCG boot, comparing
#   thin    tcmud on a thin volume (pool on the guest tmpfs, 64 KiB chunks)
#   file    tcmud on a raw file (dev_config file//tmp/b/file.img)
#   runner  Debian's tcmu-runner 1.5.4, its qcow handler on a raw image (the peer)
#   fileio  the kernel's own fileio backstore on a raw image (the in-kernel upper bound)
# fio libaio direct iodepth 32: 4k randread, 4k randwrite, 1M seq read, 1M seq write;
# interleaved (each workload on each backend in turn, order rotated every rep), median of N.
#
# Every backend is configured alike (tests/vm/bench/kernel-path-guest.sh does it):
#   - same image size; every image and the pool on the same guest tmpfs (/tmp); every LUN
#     filled with the same random data before the first run;
#   - initiator: max_sectors_kb=512 on every sdX (so 1M requests arrive as 512 KiB commands);
#   - TCMU devices: hw_max_sectors=1024, max_data_area_mb=256, nl_reply_supported=-1;
#   - write cache (--cache, default wb): attrib/emulate_write_cache=1 on all four, written
#     before enable. tcmud then acknowledges writes without an fdatasync/metadata commit
#     each; tcmu-runner's qcow handler never syncs per write in either mode; fileio gets
#     fd_buffered_io=1 (page cache; without it fileio opens the image O_DSYNC).
#     --cache wt: emulate_write_cache=0 everywhere: tcmud makes every write durable before
#     acknowledging it (fdatasync / pool commit), fileio is O_DSYNC, tcmu-runner unchanged
#     (it ignores write-through) -- that row set is NOT apples to apples for tcmu-runner.
#     On tmpfs fdatasync costs little; on a disk it would dominate write-through numbers.
# Prints IOPS and MB/s (MiB/s) per backend (median, with min-max over the reps), the
# ratios tcmud/tcmu-runner and tcmud/fileio of the medians and per rep, and the CPU time per
# I/O of the whole guest and of the daemon's process (steadier than IOPS on a busy host).
#
# Usage: tests/vm/bench-kernel-path.sh [--no-build] [--tcmud BIN] [--size MB] [--runtime S]
#          [--reps N] [--smp N] [--cache wb|wt] [--backends thin,file,runner,fileio]
#          [--workloads randread4k,randwrite4k,read1m,write1m] [--log TCMUD_LOG_FILTER]
#   defaults: size 192 MiB, runtime 5 s per fio run (plus 1 s ramp), 3 reps, 2 vCPUs, wb.
#   --perf: record every run with perf in the guest (the host's /usr/bin/perf, which must
#   match the guest's 6.1 kernel) and print the busy share and top symbols per run.
#   --from-log FILE: no VM, print the report of an earlier run's console log.
#   --log e.g. 'warn,tcmud::device::actor=trace' (tcmud's device counters every second; the
#   last ones are printed at the end of the guest log).
# Numbers are from an emulated (TCG) guest: compare ratios, not absolute values.
set -uo pipefail
me=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$me/../.." && pwd)
PERF=0 BUILD=1 TCMUD="" SIZE=192 RT=5 REPS=3 SMP=2 CACHE=wb LOGF="" FROM=""
BACKENDS=thin,file,runner,fileio WORKLOADS=randread4k,randwrite4k,read1m,write1m
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) BUILD=0; shift;;
        --tcmud) TCMUD=$(readlink -f "$2"); shift 2;;
        --size) SIZE=$2; shift 2;;
        --runtime) RT=$2; shift 2;;
        --reps) REPS=$2; shift 2;;
        --smp) SMP=$2; shift 2;;
        --cache) CACHE=$2; shift 2;;
        --backends) BACKENDS=$2; shift 2;;
        --workloads) WORKLOADS=$2; shift 2;;
        --log) LOGF=$2; shift 2;;
        --from-log) FROM=$2; shift 2;;
        --perf) PERF=1; shift;;
        -h|--help) sed -n '2,37p' "$0"; exit 0;;
        *) echo "unknown argument $1" >&2; exit 2;;
    esac
done
if [ -n "$FROM" ]; then
    # Report on an earlier run's console log; settings from its "bench:" line.
    LOG=$FROM
    b=$(grep -a -m1 '^GUEST: bench: size' "$LOG") || { echo "no bench line in $LOG" >&2; exit 2; }
    REPS=$(echo "$b" | sed -n 's/.* reps \([0-9]*\) .*/\1/p')
    CACHE=$(echo "$b" | sed -n 's/.* cache \([a-z]*\) .*/\1/p')
    BACKENDS=$(echo "$b" | sed -n "s/.* backends '\([^']*\)'.*/\1/p" | tr ' ' ',')
    WORKLOADS=$(echo "$b" | sed -n "s/.* workloads '\([^']*\)'.*/\1/p" | tr ' ' ',')
elif [ -z "$TCMUD" ]; then
    TCMUD=$repo/target/release/tcmud
    if [ "$BUILD" = 1 ]; then
        echo "== cargo build --release -p tcmud"
        (cd "$repo" && cargo build --release -p tcmud) || exit 2
    fi
fi
if [ -z "$FROM" ]; then
[ -x "$TCMUD" ] || { echo "no tcmud binary at $TCMUD" >&2; exit 2; }
# the guest gets the binary without debug info (the release profile keeps it)
tmpbin=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-bench.XXXXXX")
trap 'rm -rf "$tmpbin"' EXIT
strip --strip-debug -o "$tmpbin/tcmud" "$TCMUD" 2>/dev/null || cp "$TCMUD" "$tmpbin/tcmud"
TCMUD=$tmpbin/tcmud
LOGDIR=$repo/target/vm-logs; mkdir -p "$LOGDIR"
LOG=$LOGDIR/bench-kernel-path-$(date +%Y%m%d-%H%M%S).log
# fio runs per rep, each RT+1 s plus fio start-up, plus boot and filling the LUNs
NB=$(echo "$BACKENDS" | tr ',' '\n' | grep -c .) NW=$(echo "$WORKLOADS" | tr ',' '\n' | grep -c .)
TMO=$(( REPS * NB * NW * (RT + 8) + 400 ))
ARGS="size=$SIZE rt=$RT reps=$REPS cache=$CACHE backends=$BACKENDS workloads=$WORKLOADS"
[ -n "$LOGF" ] && ARGS="$ARGS log=$LOGF"
PERFX=()
if [ "$PERF" = 1 ]; then
    command -v perf >/dev/null || { echo "--perf needs perf on the host (linux-perf)" >&2; exit 2; }
    ARGS="$ARGS perf=1" PERFX=(-x "$(readlink -f "$(command -v perf)")")
fi
echo "== one VM boot: $ARGS (timeout ${TMO}s), log $LOG"
stat0=$(grep '^cpu ' /proc/stat)
VMLAB_TEST_ARGS="$ARGS" "$me/run-vm.sh" --quiet --smp "$SMP" --mem 3072 --timeout "$TMO" \
    --log "$LOG" -b "$TCMUD" "${PERFX[@]}" "$me/bench/kernel-path-guest.sh"
rc=$?
# How contended the host was during the boot: the guest's vCPUs are host threads, so CPU
# time stolen by the hypervisor under this host (steal) or used by other work slows every
# backstore, and the ones with more thread hand-offs per command more. Kept in the log.
echo "$stat0 $(grep '^cpu ' /proc/stat)" | awk -v n="$(nproc)" '{
    for (i = 2; i <= 9; i++) { d[i] = $(i + 11) - $i; t += d[i] }
    if (t > 0) printf "HOST during the boot: %d CPUs, busy %.0f%% (steal included), steal %.1f%% (from /proc/stat)\n", n,
        100 * (t - d[5] - d[6]) / t, 100 * d[9] / t }' >> "$LOG"
if [ $rc != 0 ]; then
    grep -a -E 'GUEST-FAIL|GUEST:|^BENCH' "$LOG" | tail -n 40
    echo "benchmark failed (status $rc), log: $LOG"; exit 1
fi
fi
grep -a '^GUEST: ' "$LOG" | grep -E 'max_sectors_kb|bench:|filled' | sed 's/^GUEST: /   /'
grep -a '^HOST during' "$LOG" | sed 's/^/   /'
grep -a '^BENCH ' "$LOG" | awk -v reps="$REPS" -v cache="$CACHE" -v bl="$BACKENDS" -v wl="$WORKLOADS" '
    function sort(arr, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    }
    function median(arr, n) { sort(arr, n); return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2 }
    { k = $2 SUBSEP $3; n[k]++; iops[k, n[k]] = $5; bw[k, n[k]] = $6; V[$2, $3, $4] = $6
      # CPU per I/O (newer logs): "cpu_us guest N daemon N"
      for (i = 7; i < NF; i++) if ($i == "cpu_us") {
          if ($(i + 2) != "-") { ng[k]++; G[k, ng[k]] = $(i + 2) }
          if ($(i + 4) != "-") { nd[k]++; D[k, nd[k]] = $(i + 4) }
      } }
    END {
        nw = split(wl, W, ","); nb = split(bl, B, ",")
        split("thin file runner fileio", NAME, " ")
        label["thin"] = "tcmud thin"; label["file"] = "tcmud file"
        label["runner"] = "tcmu-runner qcow"; label["fileio"] = "kernel fileio"
        for (wi = 1; wi <= nw; wi++) for (bi = 1; bi <= nb; bi++) {
            k = B[bi] SUBSEP W[wi]; m = n[k]
            delete x; delete y
            for (i = 1; i <= m; i++) { x[i] = iops[k, i]; y[i] = bw[k, i] / 1024 }
            I[k] = m ? median(x, m) : 0; M[k] = m ? median(y, m) : 0
            LO[k] = m ? x[1] : 0; HI[k] = m ? x[m] : 0
            MLO[k] = m ? y[1] : 0; MHI[k] = m ? y[m] : 0
        }
        printf "\nwrite cache: %s; median of %d interleaved runs (min-max); 4k rows IOPS, 1m rows MB/s (MiB/s)\n", cache, reps
        printf "%-12s", "workload"
        for (bi = 1; bi <= nb; bi++) printf " | %-22s", label[B[bi]]
        printf " | %-9s %-9s | %-9s %-9s\n", "thin/run", "file/run", "thin/fio", "file/fio"
        for (wi = 1; wi <= nw; wi++) {
            w = W[wi]; mb = (w ~ /1m$/); line = sprintf("%-12s", w)
            for (bi = 1; bi <= nb; bi++) {
                k = B[bi] SUBSEP w
                if (mb) line = line sprintf(" | %7.1f (%5.1f-%5.1f)", M[k], MLO[k], MHI[k])
                else line = line sprintf(" | %7d (%5d-%5d)", I[k], LO[k], HI[k])
            }
            # ratios of the medians (of KiB/s: for a fixed block size the same as IOPS, and
            # not rounded to whole IOPS)
            t = M["thin" SUBSEP w]; f = M["file" SUBSEP w]; r = M["runner" SUBSEP w]; o = M["fileio" SUBSEP w]
            line = line sprintf(" | %8.2fx %8.2fx | %8.2fx %8.2fx", r ? t / r : 0, r ? f / r : 0, o ? t / o : 0, o ? f / o : 0)
            print line
        }
        # Paired: the ratio within each rep (the two runs were minutes apart at most, so
        # the host load they saw was alike), then the median and range of those.
        np = split("thin:runner file:runner thin:fileio file:fileio", P, " ")
        printf "\nper-rep ratios (KiB/s within the same rep): median (min-max)\n%-12s", "workload"
        for (pi = 1; pi <= np; pi++) { split(P[pi], ab, ":"); printf " | %-20s", ab[1] "/" ab[2] }
        printf "\n"
        for (wi = 1; wi <= nw; wi++) {
            w = W[wi]; line = sprintf("%-12s", w)
            for (pi = 1; pi <= np; pi++) {
                split(P[pi], ab, ":"); m = 0; delete z
                for (r = 1; r <= reps; r++) {
                    a = V[ab[1], w, r]; c = V[ab[2], w, r]
                    if (a != "" && c > 0) z[++m] = a / c
                }
                if (m) { med = median(z, m); line = line sprintf(" | %5.2fx (%4.2f-%4.2f)", med, z[1], z[m]) }
                else line = line sprintf(" | %-20s", "-")
            }
            print line
        }
        # CPU time per I/O: less noisy than IOPS on a busy host (a contended host stretches
        # waits more than work), and what "as fast" costs the machine.
        any = 0
        for (wi = 1; wi <= nw; wi++) for (bi = 1; bi <= nb; bi++) if (ng[B[bi] SUBSEP W[wi]]) any = 1
        if (!any) exit
        printf "\nCPU per I/O, microseconds, median: whole guest / daemon process (tcmud, tcmu-runner)\n%-12s", "workload"
        for (bi = 1; bi <= nb; bi++) printf " | %-15s", label[B[bi]]
        printf " | %-17s %-17s\n", "thin/run guest", "file/run guest"
        for (wi = 1; wi <= nw; wi++) {
            w = W[wi]; line = sprintf("%-12s", w)
            for (bi = 1; bi <= nb; bi++) {
                k = B[bi] SUBSEP w
                delete x; for (i = 1; i <= ng[k]; i++) x[i] = G[k, i]
                g = ng[k] ? median(x, ng[k]) : 0; GM[B[bi]] = g
                delete x; for (i = 1; i <= nd[k]; i++) x[i] = D[k, i]
                d = nd[k] ? sprintf("%.0f", median(x, nd[k])) : "-"
                line = line sprintf(" | %6.0f / %-6s", g, d)
            }
            r = GM["runner"]
            line = line sprintf(" | %8.2fx %8s %8.2fx", r ? GM["thin"] / r : 0, "", r ? GM["file"] / r : 0)
            print line
        }
    }'
echo "per run (backend workload rep IOPS KiB/s guest-uptime clat p50/p99/max):"
grep -a '^BENCH ' "$LOG" | sort -k2,2 -k3,3 -k4,4n | sed 's/^BENCH /   /'
grep -a '^PERF ' "$LOG" | grep -q . && echo "perf: grep -a '^PERF ' $LOG"
echo "raw results: grep -a '^BENCH ' $LOG"
