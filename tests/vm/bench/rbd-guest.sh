#!/bin/sh
# rbd-guest.sh -- guest half of tests/vm/bench-rbd.sh (one VM boot, initramfs --ceph).
# Args (KEY=VALUE words, all optional):
#   size=MB (128)  rt=S (10)  reps=N (3)  cache=wb|wt (wb)
#   backends=tcmud,runner[,tcmudx][,base][,librbd]   workloads=randread4k,randwrite4k,read1m,write1m
#   log=FILTER (tcmud's log filter)
#   daemon=KEY=VALUE,... (backend tcmudx: tcmud with these extra keys in its [daemon] table,
#   e.g. io_threads=64,io_jobs_per_backstore=32)
#
# 1. A single-node Ceph cluster on the guest's loopback (guest/ceph-lib.sh: mon + memstore
#    OSD, auth none, size-1 pool `rbd`), one image rbd/img of SIZE MiB (default features),
#    filled end to end (`rbd bench` sequential 4 MiB writes) so every read hits data.
# 2. The SAME image is served by one daemon at a time (both open it with librbd and the image's
#    exclusive lock; two at once would fight over it): for each rep, each backend in turn
#    (order rotated every rep) starts, serves dev_config rbd/rbd/img on a TCMU backstore
#    (hw_max_sectors=1024, max_data_area_mb=256, nl_reply_supported=-1,
#    attrib/emulate_write_cache = 1 for wb / 0 for wt, written before enable) exported as a
#    tcm_loop LUN (initiator max_sectors_kb=512), runs every workload, then the LUN and the
#    backstore are removed and the daemon stopped (SIGTERM):
#      tcmud   /vmlab/bin/tcmud (built with --features rbd), its default configuration
#      runner  Debian's tcmu-runner 1.5.4 with its handler_rbd.so
#      base    /vmlab/bin/tcmud-base (another tcmud build, e.g. main's), default configuration
#      librbd  no daemon and no LUN: fio's own rbd engine (librbd in fio's process) on the
#              image, the same workloads: the rate the cluster and librbd allow with no SCSI,
#              no TCMU ring and no block layer in between, a ceiling for any TCMU daemon
#              built on librbd (its "daemon" CPU column is empty: librbd runs inside fio)
#    Each reads /etc/ceph/ceph.conf and turns librbd's cache off itself (rbd_cache=false; fio
#    through a copy of the configuration that says so for client.admin).
# 3. fio libaio direct iodepth 32, time based, 1 s ramp: 4k randread, 4k randwrite, 1M seq
#    read, 1M seq write.
# Prints "BENCH <backend> <workload> <rep> <iops> <KiB/s> <guest uptime from-to> clat_ms p50 N
# p99 N max N cpu_us guest N daemon N osd N" (CPU time per I/O in microseconds: the whole
# guest, the daemon's process, the ceph-osd process; utime+stime deltas of /proc/PID/stat
# over the fio run, ramp included, divided by the I/Os at the measured rate: KiB/s / block
# size x seconds, as fio rounds IOPS to integers).
. /vmlab/tcmud-lib.sh
. /vmlab/ceph-lib.sh

SIZE_MB=128 RT=10 REPS=3 CACHE=wb
BACKENDS="tcmud runner"
WORKLOADS="randread4k randwrite4k read1m write1m"
LOGF="warn,tcmud::supervisor::run=info"
DAEMON_KEYS=""
for a in "$@"; do
    case $a in
        size=*) SIZE_MB=${a#size=};; rt=*) RT=${a#rt=};; reps=*) REPS=${a#reps=};;
        cache=*) CACHE=${a#cache=};;
        backends=*) BACKENDS=$(echo "${a#backends=}" | tr ',' ' ');;
        workloads=*) WORKLOADS=$(echo "${a#workloads=}" | tr ',' ' ');;
        log=*) LOGF="${a#log=},tcmud::supervisor::run=info";;
        daemon=*) DAEMON_KEYS=$(echo "${a#daemon=}" | tr ',' ' ');;
        *) fail "unknown argument $a";;
    esac
done
case $CACHE in wb) WCE=1;; wt) WCE=0;; *) fail "cache must be wb or wt";; esac
MB=1048576
SIZE=$((SIZE_MB * MB))
vmsg "bench: size ${SIZE_MB}MiB rt ${RT}s reps $REPS cache $CACHE backends '$BACKENDS' workloads '$WORKLOADS' tcmud daemon keys '$DAEMON_KEYS'"

ceph_start
ceph_pool rbd
ceph_image rbd/img "$SIZE_MB"
t0=$(ceph_uptime)
timeout 600 rbd bench --io-type write --io-size 4M --io-threads 4 --io-pattern seq \
    --io-total "$SIZE_MB"M rbd/img > /tmp/fill.out 2>&1 || { cat /tmp/fill.out; cfail "filling rbd/img"; }
vmsg "rbd/img filled (rbd bench, 4 MiB sequential writes) in $(awk -v a="$t0" -v b="$(ceph_uptime)" 'BEGIN{printf "%.1f", b-a}') s; $(grep -E 'MemFree' /proc/meminfo | tr -s ' ')"

# start_backend B -> sets DPID (the daemon's pid)
start_backend() {
    case $1 in
        tcmud|tcmudx|base)
            # shellcheck disable=SC2034 # read by tcmud-lib.sh
            TCMUD_LOG_LEVEL=$LOGF
            # shellcheck disable=SC2034 # read by tcmud-lib.sh
            case $1 in base) TCMUD=/vmlab/bin/tcmud-base;; *) TCMUD=/vmlab/bin/tcmud;; esac
            tcmud_write_config
            # no pool tables: the [daemon] table is the last one
            if [ "$1" = tcmudx ]; then for _k in $DAEMON_KEYS; do echo "$_k" >> "$TCMUD_CONF"; done; fi
            tcmud_start
            DPID=$TCMUD_PID;;
        runner)
            tcmu-runner > /tmp/runner.out 2>&1 &
            DPID=$!
            runner_ready "$DPID" || { cat /tmp/runner.out; fail "tcmu-runner exited or never joined the netlink group"; };;
        librbd)
            DPID=""
            { cat "$CEPH_CONF"; printf '[client.admin]\nrbd cache = false\n'; } > /tmp/fio-ceph.conf;;
        *) fail "unknown backend $1";;
    esac
}
stop_backend() {
    case $1 in
        tcmud|tcmudx|base) tcmud_alive || fail "tcmud died during the benchmark"; tcmud_stop;;
        runner) kill -0 "$DPID" || fail "tcmu-runner died during the benchmark"
                kill -TERM "$DPID"; wait "$DPID";;
        librbd) ;;
    esac
}
# the backstore: the common settings, the write cache attribute written before enable
rbd_dev() {
    _d=$CFG/core/user_1/$1
    mkdir -p "$_d" || return 1
    for _kv in "dev_config=rbd/rbd/img" "dev_size=$SIZE" hw_max_sectors=1024 max_data_area_mb=256 \
            nl_reply_supported=-1; do
        printf %s "$_kv" > "$_d/control" || return 1
    done
    echo "$WCE" > "$_d/attrib/emulate_write_cache" || return 1
    echo 1 > "$_d/enable" || return 1
}

# cpu_ticks PID... -> "<busy ticks of the whole guest> <ticks of each PID, or ->" (USER_HZ)
cpu_ticks() {
    _out=$(awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
    for _p in "$@"; do
        # no pid (backend librbd: no daemon): "-" (an empty one would name /proc//stat,
        # which is /proc/stat)
        _t=""
        [ -n "$_p" ] && _t=$(awk '{ print $14 + $15 }' "/proc/$_p/stat" 2>/dev/null)
        _out="$_out ${_t:--}"
    done
    echo "$_out"
}

# threads_cpu LABEL REP PID -- "THREADS LABEL REP total N: comm ticks, ..." the process's CPU
#   ticks (utime+stime, USER_HZ) since it started, summed per thread name (digits folded: the
#   librados messenger's msgr-worker-0/1/2 count as one), largest first: which threads
#   (the daemon's own, librbd/librados's) the time went to
threads_cpu() {
    for _t in /proc/"$3"/task/*; do
        _c=$(tr -d ' ' < "$_t/comm" 2>/dev/null | tr '0-9' '#')
        awk -v c="$_c" '{ print c, $14 + $15 }' "$_t/stat" 2>/dev/null
    done | awk -v l="$1" -v r="$2" '{ s[$1] += $2; t += $2 } END {
        n = 0; for (k in s) o[++n] = k
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (s[o[j]] > s[o[i]]) { x = o[i]; o[i] = o[j]; o[j] = x }
        line = sprintf("THREADS %s %s total %d:", l, r, t)
        for (i = 1; i <= n && i <= 10; i++) line = line sprintf(" %s %d", o[i], s[o[i]])
        print line }'
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

dmesg_mark
rep=1
while [ $rep -le "$REPS" ]; do
    for b in $(rotate "$BACKENDS" $((rep - 1))); do
        start_backend "$b"
        if [ "$b" = librbd ]; then
            target="--ioengine=rbd --clientname=admin --pool=rbd --rbdname=img"
        else
            bg_wait 60 rbd_dev "$b" || { diag; cat /tmp/runner.out 2>/dev/null; fail "$b: rbd backstore"; }
            sd=$(loop_attach "$CFG/core/user_1/$b" 0 120) || { diag; fail "$b: no LUN"; }
            q=/sys/block/${sd#/dev/}
            echo 512 > "$q/queue/max_sectors_kb"
            [ $rep = 1 ] && vmsg "$b: $sd max_sectors_kb=$(cat "$q/queue/max_sectors_kb") emulate_write_cache=$(cat "$CFG/core/user_1/$b/attrib/emulate_write_cache") hw_max_sectors=$(cat "$CFG/core/user_1/$b/attrib/hw_max_sectors") cache_type='$(cat "$q"/device/scsi_disk/*/cache_type 2>/dev/null)'"
            target="--filename=$sd --direct=1 --ioengine=libaio"
        fi
        for w in $WORKLOADS; do
            case $w in
                randread4k) rw=randread bs=4k kb=4;;  randwrite4k) rw=randwrite bs=4k kb=4;;
                read1m) rw=read bs=1M kb=1024;;       write1m) rw=write bs=1M kb=1024;;
                *) fail "unknown workload $w";;
            esac
            t0=$(cut -d' ' -f1 /proc/uptime)
            c0=$(cpu_ticks "$DPID" "$CEPH_OSD_PID")
            # shellcheck disable=SC2086 # $target: fio options, split on purpose
            CEPH_CONF=/tmp/fio-ceph.conf fio --name="$w" $target --iodepth=32 --rw="$rw" \
                --bs="$bs" --size="$SIZE" --runtime="$RT" --time_based --ramp_time=1 --norandommap \
                --randrepeat=0 --output-format=terse --terse-version=3 > /tmp/fio.out 2>&1 ||
                { cat /tmp/fio.out; diag; fail "fio $w on $b"; }
            c1=$(cpu_ticks "$DPID" "$CEPH_OSD_PID")
            t1=$(cut -d' ' -f1 /proc/uptime)
            case $rw in *read) f="8 7 24 30 15";; *) f="49 48 65 71 56";; esac
            awk -F';' -v b="$b" -v w="$w" -v r="$rep" -v t="$t0-$t1" -v f="$f" -v c="$c0 $c1" -v kb="$kb" -v secs=$((RT + 1)) '
                function pct(v) { sub(/.*=/, "", v); return int(v / 1000) }
                function us(d, ios) { return ios > 0 ? sprintf("%.0f", d * 10000 / ios) : "-" }
                function dd(a, z) { return (C[a] == "-" || C[z] == "-") ? "-" : us(C[z] - C[a], ios) }
                /^3;/{ split(f, F, " "); split(c, C, " "); ios = $F[2] / kb * secs
                    print "BENCH", b, w, r, $F[1], $F[2], t, "clat_ms p50", pct($F[3]), "p99", pct($F[4]),
                        "max", int($F[5] / 1000), "cpu_us guest", us(C[4] - C[1], ios), "daemon", dd(2, 5), "osd", dd(3, 6) }' /tmp/fio.out
        done
        threads_cpu osd "$rep" "$CEPH_OSD_PID"
        if [ "$b" != librbd ]; then
            threads_cpu "$b" "$rep" "$DPID"
            bg_wait 60 loop_detach 0 || fail "$b: LUN unlink"
            bg_wait 60 rmdir "$CFG/core/user_1/$b" || { unstick_netlink; fail "$b: backstore rmdir"; }
        fi
        stop_backend "$b"
    done
    rep=$((rep + 1))
done
if [ -f "$TCMUD_LOG" ]; then grep -a -iE 'warn|error' "$TCMUD_LOG" | tail -n 10; fi
dmesg_new | grep -iE 'I/O error|ring broken|abort|timed out|reset' | tail -n 20
dmesg_new | grep -qiE 'I/O error|ring broken' && fail "kernel errors during the benchmark"
ceph_stop
vmsg "benchmark done"
exit 0
