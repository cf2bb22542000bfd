#!/bin/sh
# kernel-path-guest.sh -- guest half of tests/vm/bench-kernel-path.sh (one VM boot).
# Args (KEY=VALUE words, all optional):
#   size=MB (192)  rt=S (5)  reps=N (3)  cache=wb|wt (wb)
#   backends=thin,file,runner,fileio   workloads=randread4k,randwrite4k,read1m,write1m
#   log=FILTER (tcmud log filter; default warn + "tcmud ready"; tcmud::device::actor=trace
#   logs the device counters every second)
#   perf=1 (record every run system-wide with perf, cpu-clock with call graphs, and print
#   where the CPU time went: busy share, top commands and symbols; needs perf in /vmlab/extra)
#
# Every backstore is configured alike (see the header of bench-kernel-path.sh for the why):
#   - same size, every image/pool on the guest's /tmp (one tmpfs), every LUN filled with the
#     same random data before the first run;
#   - TCMU devices (tcmud thin, tcmud file, tcmu-runner): hw_max_sectors=1024,
#     max_data_area_mb=256, nl_reply_supported=-1, attrib/emulate_write_cache set BEFORE
#     enable (cache=wb: 1, the initiator sees WCE=1 and neither daemon syncs per write;
#     cache=wt: 0, tcmud makes every write durable before acknowledging it, tcmu-runner's
#     qcow handler does not);
#       thin   tcmud, dev_config thin/bench/vol (pool /tmp/pools/bench, 64 KiB chunks)
#       file   tcmud, dev_config file//tmp/b/file.img (raw file)
#       runner tcmu-runner 1.5.4, qcow//tmp/b/runner.img (its qcow handler on a raw image)
#   - fileio: the kernel's fileio backstore on /tmp/b/fileio.img; cache=wb: fd_buffered_io=1
#     (page cache, emulate_write_cache=1), cache=wt: the default O_DSYNC file;
#   - on the initiator (sd over tcm_loop) max_sectors_kb=512 for all four.
# Then REPS times, each workload runs on each backend in turn (interleaved; the backend order
# rotates every rep): fio libaio direct iodepth 32, time based, 1 s ramp.
# Prints "BENCH <backend> <workload> <rep> <iops> <KiB/s> <guest uptime from-to> clat_ms p50 N
# p99 N max N cpu_us guest N daemon N" lines for the host to aggregate (cpu_us: CPU time per
# I/O, in microseconds, of the whole guest and of the daemon's process — tcmud or tcmu-runner,
# "-" for fileio — over the fio run, counting its ramp second as I/O at the measured rate); at the end tcmud's warnings/errors (and its
# last stats ticks when log includes trace).
. /vmlab/tcmud-lib.sh

SIZE_MB=192 RT=5 REPS=3 CACHE=wb
BACKENDS="thin file runner fileio"
WORKLOADS="randread4k randwrite4k read1m write1m"
LOGF="warn,tcmud::supervisor::run=info"
PERF=0
for a in "$@"; do
    case $a in
        size=*) SIZE_MB=${a#size=};; rt=*) RT=${a#rt=};; reps=*) REPS=${a#reps=};;
        cache=*) CACHE=${a#cache=};;
        backends=*) BACKENDS=$(echo "${a#backends=}" | tr ',' ' ');;
        workloads=*) WORKLOADS=$(echo "${a#workloads=}" | tr ',' ' ');;
        log=*) LOGF="${a#log=},tcmud::supervisor::run=info";;
        perf=*) PERF=${a#perf=};;
        *) fail "unknown argument $a";;
    esac
done
case $CACHE in wb) WCE=1;; wt) WCE=0;; *) fail "cache must be wb or wt";; esac
has() { case " $BACKENDS " in *" $1 "*) return 0;; esac; return 1; }

MB=1048576
SIZE=$((SIZE_MB * MB))
mkdir -p /tmp/b
for f in file runner fileio; do truncate -s "$SIZE" /tmp/b/$f.img; done
vmsg "bench: size ${SIZE_MB}MiB rt ${RT}s reps $REPS cache $CACHE backends '$BACKENDS' workloads '$WORKLOADS'"
vmsg "bench: /tmp is $(grep ' /tmp ' /proc/mounts | cut -d' ' -f1,3,4)"

# tcmu_dev HBA DEV DEV_CONFIG -- a TCMU backstore with the common settings and the write
# cache attribute written before enable (tcmud reads it when it starts serving the device).
tcmu_dev() {
    _d=$CFG/core/$1/$2
    mkdir -p "$_d" || return 1
    for _kv in "dev_config=$3" "dev_size=$SIZE" hw_max_sectors=1024 max_data_area_mb=256 \
            nl_reply_supported=-1; do
        printf %s "$_kv" > "$_d/control" || return 1
    done
    echo "$WCE" > "$_d/attrib/emulate_write_cache" || return 1
    echo 1 > "$_d/enable" || return 1
}
# attach BACKSTORE_DIR LUN NAME -> sets SD_<NAME>
attach() {
    _sd=$(loop_attach "$1" "$2" 60) || { diag; fail "$3: no LUN"; }
    eval "SD_$3=$_sd"
}

if has thin || has file; then
    # shellcheck disable=SC2034 # read by tcmud-lib.sh
    TCMUD_LOG_LEVEL=$LOGF
    tcmud_write_config bench:$((SIZE_MB * 2))MiB:64KiB
    tcmud_start
fi
if has runner; then
    tcmu-runner > /tmp/runner.out 2>&1 &
    RPID=$!
    sleep 2
    kill -0 $RPID || { cat /tmp/runner.out; fail "tcmu-runner exited"; }
fi
if has thin; then
    bg_wait 30 tcmu_dev user_1 thin thin/bench/vol || { diag; fail "thin backstore"; }
    attach "$CFG/core/user_1/thin" 0 thin
fi
if has file; then
    bg_wait 30 tcmu_dev user_1 file file//tmp/b/file.img || { diag; fail "file backstore"; }
    attach "$CFG/core/user_1/file" 1 file
fi
if has runner; then
    bg_wait 30 tcmu_dev user_2 runner qcow//tmp/b/runner.img || { diag; fail "runner backstore"; }
    attach "$CFG/core/user_2/runner" 2 runner
fi
if has fileio; then
    F=$CFG/core/fileio_1/fileio
    mkdir -p "$F" || fail "fileio mkdir"
    if [ "$WCE" = 1 ]; then
        echo "fd_dev_name=/tmp/b/fileio.img,fd_dev_size=$SIZE,fd_buffered_io=1" > "$F/control"
    else
        echo "fd_dev_name=/tmp/b/fileio.img,fd_dev_size=$SIZE" > "$F/control"
    fi || fail "fileio control"
    echo 1 > "$F/enable" || fail "fileio enable"
    echo "$WCE" > "$F/attrib/emulate_write_cache" || fail "fileio emulate_write_cache"
    attach "$F" 3 fileio
fi
for b in $BACKENDS; do
    sd=""
    eval "sd=\$SD_$b"
    q=/sys/block/${sd#/dev/}
    echo 512 > "$q/queue/max_sectors_kb"
    case $b in fileio) a=$CFG/core/fileio_1/fileio/attrib;; thin|file) a=$CFG/core/user_1/$b/attrib;;
        *) a=$CFG/core/user_2/$b/attrib;; esac
    vmsg "$b: $sd max_sectors_kb=$(cat "$q/queue/max_sectors_kb") nr_requests=$(cat "$q/queue/nr_requests") emulate_write_cache=$(cat "$a/emulate_write_cache") hw_max_sectors=$(cat "$a/hw_max_sectors") cache_type='$(cat "$q"/device/scsi_disk/*/cache_type 2>/dev/null)'"
done

dd if=/dev/urandom of=/tmp/b/fill bs=1M count=16 2>/dev/null
for b in $BACKENDS; do
    eval "sd=\$SD_$b"
    i=0
    while [ $i -lt "$SIZE_MB" ]; do
        dd if=/tmp/b/fill of="$sd" bs=1M seek=$i oflag=direct 2>/dev/null || fail "fill $b"
        i=$((i + 16))
    done
done
rm -f /tmp/b/fill
vmsg "all LUNs filled; $(grep -E 'MemFree|^Shmem:' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"

# perf_start / perf_report B W R -- record the fio run system-wide (cpu-clock: a TCG guest
# has no hardware counters), then print the busy share of the CPUs and where the samples fell.
perf_start() {
    echo 0 > /proc/sys/kernel/kptr_restrict; echo -1 > /proc/sys/kernel/perf_event_paranoid
    _st0=$(head -n1 /proc/stat)
    perf record -a -g -F 499 -o /tmp/perf.data -- sleep $((RT + 1)) > /tmp/perf.out 2>&1 &
    PERF_PID=$!
}
perf_report() {
    wait "$PERF_PID"
    _st1=$(head -n1 /proc/stat)
    echo "$_st0 $_st1" | awk -v tag="$1 $2 $3" '{ n = 10; for (i = 2; i <= n; i++) { a += $i; b += $(i + n + 1) }
        busy = (b - a) - (($(n + 6) - $5) + ($(n + 7) - $6))
        printf "PERF %s cpu busy %.0f%% (user %.0f%% sys %.0f%% softirq %.0f%%)\n", tag, 100 * busy / (b - a),
            100 * ($(n + 3) - $2) / (b - a), 100 * ($(n + 5) - $4) / (b - a), 100 * ($(n + 9) - $8) / (b - a) }'
    perf report -i /tmp/perf.data --stdio --no-children --sort comm -g none 2>/dev/null |
        grep -E '^ +[0-9]' | head -n 8 | sed "s/^/PERF $1 $2 $3 comm /"
    perf report -i /tmp/perf.data --stdio --no-children --sort comm,sym -g none 2>/dev/null |
        grep -E '^ +[0-9]' | head -n 30 | sed "s/^/PERF $1 $2 $3 sym /"
    perf report -i /tmp/perf.data --stdio --children --sort sym -g none 2>/dev/null |
        grep -E '^ +[0-9]' | head -n 40 | sed "s/^/PERF $1 $2 $3 incl /"
    # the daemon's busiest thread on its own (tcmud's device actor, tcmu-runner's I/O thread)
    case $1 in thin|file) _c='actix-rt|system';; runner) _c=$(perf report -i /tmp/perf.data --stdio \
        --no-children --sort comm -g none 2>/dev/null | grep -oE 'aio-uio[0-9]+' | head -n1);; *) _c="";; esac
    [ -n "$_c" ] && perf report -i /tmp/perf.data --stdio --children --comms "$_c" --sort sym -g none \
        2>/dev/null | grep -E '^ +[0-9]' | head -n 50 | sed "s/^/PERF $1 $2 $3 thread /"
    rm -f /tmp/perf.data
}

# cpu_ticks [PID] -> "<busy ticks of the whole guest> <CPU ticks of process PID, or ->" (USER_HZ)
cpu_ticks() {
    _busy=$(awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
    _proc=-
    [ -n "$1" ] && _proc=$(awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null)
    echo "$_busy ${_proc:--}"
}

# rotate LIST N -> LIST rotated left by N
rotate() {
    _n=$2
    # shellcheck disable=SC2086 # split the list into words on purpose
    set -- $1
    _c=$#; [ "$_c" -gt 0 ] || return 0
    _n=$((_n % _c))
    while [ "$_n" -gt 0 ]; do _f=$1; shift; set -- "$@" "$_f"; _n=$((_n - 1)); done
    echo "$@"
}

rep=1
while [ $rep -le "$REPS" ]; do
    for w in $WORKLOADS; do
        case $w in
            randread4k) rw=randread bs=4k;;  randwrite4k) rw=randwrite bs=4k;;
            read1m) rw=read bs=1M;;          write1m) rw=write bs=1M;;
            *) fail "unknown workload $w";;
        esac
        for b in $(rotate "$BACKENDS" $((rep - 1))); do
            eval "sd=\$SD_$b"
            case $b in thin|file) dpid=$TCMUD_PID;; runner) dpid=$RPID;; *) dpid="";; esac
            t0=$(cut -d' ' -f1 /proc/uptime)
            c0=$(cpu_ticks "$dpid")
            [ "$PERF" = 1 ] && perf_start
            fio --name="$w" --filename="$sd" --direct=1 --ioengine=libaio --iodepth=32 --rw="$rw" \
                --bs="$bs" --size="$SIZE" --runtime="$RT" --time_based --ramp_time=1 --norandommap \
                --randrepeat=0 --output-format=terse --terse-version=3 > /tmp/fio.out 2>&1 ||
                { cat /tmp/fio.out; diag; fail "fio $w on $b"; }
            c1=$(cpu_ticks "$dpid")
            t1=$(cut -d' ' -f1 /proc/uptime)
            [ "$PERF" = 1 ] && perf_report "$b" "$w" "$rep"
            # terse v3: read iops/KiB/s fields 8/7, clat max 15, p50 24, p99 30;
            # write fields 49/48, clat max 56, p50 65, p99 71 (clat in usec)
            case $rw in
                *read) f="8 7 24 30 15";;
                *)     f="49 48 65 71 56";;
            esac
            awk -F';' -v b="$b" -v w="$w" -v r="$rep" -v t="$t0-$t1" -v f="$f" -v c="$c0 $c1" -v secs=$((RT + 1)) '
                function pct(v) { sub(/.*=/, "", v); return int(v / 1000) }
                # ticks of 1/100 s over the I/Os of ramp + run
                function us(d, ios) { return ios > 0 ? sprintf("%.0f", d * 10000 / ios) : "-" }
                /^3;/{ split(f, F, " "); split(c, C, " "); ios = $F[1] * secs
                    dproc = (C[2] == "-" || C[4] == "-") ? "-" : us(C[4] - C[2], ios)
                    print "BENCH", b, w, r, $F[1], $F[2], t, "clat_ms p50", pct($F[3]), "p99", pct($F[4]), "max", int($F[5] / 1000), "cpu_us guest", us(C[3] - C[1], ios), "daemon", dproc }' /tmp/fio.out
        done
    done
    rep=$((rep + 1))
done
if has thin || has file; then
    tcmud_alive || fail "tcmud died during the benchmark"
    case $LOGF in *trace*) grep -a tick "$TCMUD_LOG" | tail -n 4;; esac
    grep -a -iE 'warn|error' "$TCMUD_LOG" | tail -n 10
fi
if has runner; then kill -0 "$RPID" || fail "tcmu-runner died during the benchmark"; fi
dmesg | grep -iE 'I/O error|ring broken|abort|timed out|reset' | tail -n 20
dmesg | grep -qiE 'I/O error|ring broken' && fail "kernel errors during the benchmark"
vmsg "benchmark done"
exit 0
