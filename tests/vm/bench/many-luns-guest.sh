#!/bin/sh
# many-luns-guest.sh -- guest half of tests/vm/bench-many-luns.sh (one VM boot).
# Args (KEY=VALUE words, all optional):
#   n=N (64) LUNs per daemon   size=MB (16) per LUN   fio=MB (2) written (then verified) per LUN
#   (or fio=NNNk: KiB; fio=0: no fio passes, e.g. creation and adoption alone at 1,000 LUNs)
#   qd=N (4) fio iodepth per LUN   backends=tcmud,runner[,old]   log=FILTER (tcmud log filter)
#   ring=MB (kernel default): cmd_ring_size_mb of every device (the kernel allocates the command
#   ring up front, 8 MiB each by default: 1,000 LUNs need ring=1)
#   cache=wb|wt (wb): attrib/emulate_write_cache written before enable (1: neither daemon
#   syncs per write; 0: tcmud makes every write durable before acknowledging it, tcmu-runner's
#   qcow handler does not -- not apples to apples, as in bench-kernel-path.sh)
#
# For each daemon in turn (the other one is not running):
#   tcmud   N thin volumes in one pool (thin/many/lunK, pool /tmp/pools/many, 64 KiB chunks)
#   runner  tcmu-runner 1.5.4, qcow//tmp/r/lunK.img (its qcow handler on raw sparse images),
#           started with an open-file limit of 65,536 (its default 1,024 serves ~507 devices)
#   old     /vmlab/bin/tcmud-old (another tcmud build, e.g. main) on pool /tmp/pools/old
# 1. start the daemon, then create N TCMU backstores in a burst (kernel defaults besides
#    dev_config, dev_size and nl_reply_supported=-1, as in bench-kernel-path.sh; N ADDED
#    events): "add" = seconds until the daemon holds all N uio;
# 2. export them as N tcm_loop LUNs (each symlink is a synchronous SCSI scan): "attach";
# 3. idle: Threads and VmRSS (/proc/PID/status) and open fds of the daemon;
# 4. one fio over all N LUNs at once (one job per LUN, libaio direct, 4k randwrite, iodepth
#    qd, fio MB each, crc32c verify): per-LUN write IOPS min/mean/max, then threads/fds/RSS;
# 5. restart the daemon (SIGTERM, start): "adopt" = seconds until it holds all N uio again,
#    then fio --verify_only over every LUN (what was written before the restart reads back);
# 6. unlink the N LUNs and remove the N backstores (N REMOVED events): "remove" = seconds
#    until the daemon holds none of them; then stop it (the next daemon starts clean, and the
#    guest powers off without unserved devices).
# Prints "MANY <backend> key value ..." lines for the host to tabulate.
. /vmlab/tcmud-lib.sh

N=64 SIZE_MB=16 FIO_MB=2 QD=4 BACKENDS="tcmud runner" CACHE=wb RING=""
LOGF="warn,tcmud::supervisor::run=info"
for a in "$@"; do
    case $a in
        n=*) N=${a#n=};; size=*) SIZE_MB=${a#size=};; fio=*) FIO_MB=${a#fio=};;
        qd=*) QD=${a#qd=};; cache=*) CACHE=${a#cache=};; ring=*) RING=${a#ring=};; backends=*) BACKENDS=$(echo "${a#backends=}" | tr ',' ' ');;
        log=*) LOGF="${a#log=},tcmud::supervisor::run=info";;
        *) fail "unknown argument $a";;
    esac
done
# fio=NNNk: KiB per LUN instead of MiB (1,000 LUNs: 256k keeps the run under an hour in TCG)
case $FIO_MB in *k) FIO_SIZE=$FIO_MB;; *) FIO_SIZE=${FIO_MB}m;; esac
case $CACHE in wb) WCE=1;; wt) WCE=0;; *) fail "cache must be wb or wt";; esac
SIZE=$((SIZE_MB * 1048576))
vmsg "many-luns: n $N size ${SIZE_MB}MiB fio ${FIO_MB}MiB qd $QD cache $CACHE ring '${RING:-default}' backends '$BACKENDS' cpus $(nproc)"

# stats PID -> "threads T fds F rss_kib R anon_kib A thp_kib H uio_kib U status_rss_kib S": R,
#   A, H from /proc/PID/smaps_rollup (Rss, Anonymous, AnonHugePages: the page tables walked;
#   H is the part of A in transparent huge pages), U the part of R in
#   the /dev/uioN mappings (command ring and data-area pages the daemon's mappings have
#   touched: the kernel's memory, shared with it), S VmRSS of /proc/PID/status for reference
#   -- on this kernel (6.1) status sums per-thread counters that a thread flushes only every
#   64 page faults, so it under-counts a process with many threads (tcmu-runner: 132 threads,
#   after fio VmRSS unchanged while its mappings gained ~9 MiB)
stats() {
    echo "threads $(awk '/^Threads:/{ print $2 }' "/proc/$1/status")" \
        "fds $(ls "/proc/$1/fd" | wc -l)" "$(awk '/^Rss:/{ r = $2 } /^Anonymous:/{ a = $2 } /^AnonHugePages:/{ h = $2 }
            END { printf "rss_kib %d anon_kib %d thp_kib %d", r, a, h }' "/proc/$1/smaps_rollup")" \
        "$(awk '/^[0-9a-f]+-[0-9a-f]+ / { u = ($6 ~ /^\/dev\/uio/) } u && /^Rss:/ { t += $2 }
            END { printf "uio_kib %d", t }' "/proc/$1/smaps")" \
        "status_rss_kib $(awk '/^VmRSS:/{ print $2 }' "/proc/$1/status")"
}
# uio_list PREFIX -- /tmp/uio-PREFIX: the /dev/uioN of the backstores named PREFIXk
uio_list() {
    for _u in /sys/class/uio/uio*; do
        case $(cat "$_u/name") in "tcm-user/"*"/$1"[0-9]*/*) echo "/dev/$(basename "$_u")";; esac
    done > "/tmp/uio-$1"
}
# smaps PID WHAT -- where the daemon's resident memory is: "SMAPS <backend> WHAT name N
#   maps M rss_kib R anon_kib A shmem_kib S" per mapped file / [heap] / [stack] / [anon]
#   (malloc arenas, thread stacks, sled's and the pool's caches) / /dev/uioN (summed as
#   [uio]: data-area and ring pages the daemon touched), then every mapping with 64 KiB or
#   more resident ("... map ADDR PERMS size_kib S rss_kib R anon_kib A NAME")
smaps() {
    awk -v tag="SMAPS $PH $2" '
        function flush() { if (addr != "" && rss >= 64) printf "%s map %s %s size_kib %d rss_kib %d anon_kib %d %s\n", tag, addr, perms, size, rss, an, name }
        /^[0-9a-f]+-[0-9a-f]+ / { flush(); addr = $1; perms = $2; name = (NF >= 6) ? $6 : "[anon]"
            if (name ~ /^\/dev\/uio/) name = "[uio]"; n[name]++; rss = 0; an = 0; next }
        /^Size:/ { size = $2; next }
        /^Rss:/ { r[name] += $2; rss = $2; next }
        /^Shared_Dirty:|^Shared_Clean:/ { if (name == "[uio]") sh[name] += $2; next }
        /^Anonymous:/ { a[name] += $2; an = $2; next }
        END { flush(); for (k in r) if (r[k] > 0) printf "%s name %s maps %d rss_kib %d anon_kib %d shmem_kib %d\n", tag, k, n[k], r[k], a[k], sh[k] }' \
        "/proc/$1/smaps" > /tmp/smaps.txt
    grep ' name ' /tmp/smaps.txt | sort -k9 -n -r | head -n 8
    grep ' map ' /tmp/smaps.txt | sort -k10 -n -r | head -n 24
}
# served PID -> how many distinct /dev/uio* the process holds open (each daemon's devices are
#   removed before the next one starts, so these are the current backstores; tcmud holds two
#   fds per device, the uio and a duplicate its reactor waits on: count devices, not fds)
# shellcheck disable=SC2010 # fd symlink targets: ls -l is what shows them
served() { ls -l "/proc/$1/fd" 2>/dev/null | grep -o ' -> /dev/uio[0-9]*$' | sort -u | wc -l; }
# wait_all PID SECS -- until PID holds N uio (polls every 0.2 s); false after SECS (guest
#   clock: one poll of 1,000 devices takes a while in TCG, so no count of polls). When the
#   count has not moved for STALL seconds (60) while devices are missing: one "MANY <backend>
#   stalled" line and a dump of the daemon's threads, then it keeps waiting
# tcmu-runner with its open-file limit raised as for tcmud (LimitNOFILE=65536 in tcmud.service):
# tcmu-runner does not raise its own soft limit and stops at ~507 devices with 1,024.
# The guest's /bin/sh is dash, whose ulimit has -n.
runner_launch() {
    # shellcheck disable=SC3045
    ulimit -n 65536 && exec tcmu-runner
}

wait_all() {
    _end=$(( $(now_cs) + $2 * 100 )) _last=-1 _since=$(now_cs) _dumped=0
    while :; do
        _s=$(served "$1")
        [ "$_s" -ge "$N" ] && return 0
        kill -0 "$1" 2>/dev/null || { diag; fail "daemon $1 exited"; }
        _now=$(now_cs)
        [ "$_now" -ge "$_end" ] && return 1
        if [ "$_s" != "$_last" ]; then
            _last=$_s _since=$_now
        elif [ $_dumped = 0 ] && [ $(( (_now - _since) / 100 )) -ge "${STALL_SERVED:-60}" ]; then
            _dumped=1
            echo "MANY $PH stalled serving $_s of $N for ${STALL_SERVED:-60} s"
            threads_dump "$1"
            DIAG_LINES=80 diag
        fi
        sleep 0.2
    done
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 100 }'; }

# create_all HBA PREFIX CONFIG_PREFIX -- N backstores HBA/PREFIXk, dev_config CONFIG_PREFIXk...
create_all() {
    _i=0
    while [ $_i -lt "$N" ]; do
        _d=$CFG/core/$1/$2$_i
        mkdir -p "$_d" || fail "mkdir $_d"
        printf %s "dev_config=$3$_i$4" > "$_d/control" || fail "dev_config $_d"
        printf %s "dev_size=$SIZE" > "$_d/control" || fail "dev_size $_d"
        printf %s "nl_reply_supported=-1" > "$_d/control" || fail "nl_reply_supported $_d"
        if [ -n "$RING" ]; then
            printf %s "cmd_ring_size_mb=$RING" > "$_d/control" || fail "cmd_ring_size_mb $_d"
        fi
        echo "$WCE" > "$_d/attrib/emulate_write_cache" || fail "emulate_write_cache $_d"
        echo 1 > "$_d/enable" || fail "enable $_d"
        _i=$((_i + 1))
        # every tenth of the burst: how many the daemon already serves (does it keep up
        # with the configfs writes, or is the kernel side the slow one?)
        if [ $((_i % ((N + 9) / 10))) = 0 ] && [ -n "${PID:-}" ]; then
            echo "MANY $PH burst created $_i secs $(secs "$t0" "$(now_cs)") served $(served "$PID")"
        fi
    done
}
# attach_all HBA PREFIX FIRST_LUN -- tcm_loop LUNs FIRST_LUN.. for them; sets DEVS (sdX:...)
attach_all() {
    _t=$CFG/loopback/$LOOP_WWN/tpgt_1
    _i=0
    while [ $_i -lt "$N" ]; do
        _l=$(($3 + _i))
        mkdir -p "$_t/lun/lun_$_l" || fail "mkdir lun_$_l"
        if [ $_i = 0 ] && [ -z "$(cat "$_t/nexus" 2>/dev/null)" ]; then
            printf %s "$LOOP_NEXUS" > "$_t/nexus" || fail "nexus"
        fi
        ln -s "$CFG/core/$1/$2$_i" "$_t/lun/lun_$_l/$2$_i" || fail "link LUN $_l"
        _i=$((_i + 1))
    done
    # LUN number -> sdX in one pass over /sys/block (a glob per LUN is quadratic)
    _n=600
    until [ "$(ls -d /sys/block/sd* 2>/dev/null | wc -l)" -ge "$N" ]; do
        [ $_n -le 0 ] && { diag; fail "only $(ls -d /sys/block/sd* | wc -l) SCSI disks"; }
        sleep 0.1; _n=$((_n - 1))
    done
    for _s in /sys/block/sd*; do
        echo "$(basename "$(readlink -f "$_s/device")") ${_s##*/}"
    done | awk -F'[: ]' -v lo="$3" -v hi="$(($3 + N))" '$4 >= lo && $4 < hi { print $4, $5 }' |
        sort -n > /tmp/luns
    [ "$(wc -l < /tmp/luns)" = "$N" ] || { diag; fail "$(wc -l < /tmp/luns) of $N LUNs have a disk"; }
    DEVS=""
    for _d in $(cut -d' ' -f2 /tmp/luns); do
        wait_for "/dev/$_d" 10 || fail "no /dev/$_d"
        DEVS="$DEVS /dev/$_d"
    done
}

# remove_all HBA PREFIX FIRST_LUN -- unlink the N LUNs, then rmdir the N backstores (N
#   REMOVED events); FIRST_LUN "-": no LUNs to unlink
remove_all() {
    _t=$CFG/loopback/$LOOP_WWN/tpgt_1
    _i=0
    while [ "$3" != - ] && [ $_i -lt "$N" ]; do
        _l=$(($3 + _i))
        rm "$_t/lun/lun_$_l/$2$_i" && rmdir "$_t/lun/lun_$_l" || fail "unlink LUN $_l"
        _i=$((_i + 1))
    done
    _i=0
    while [ $_i -lt "$N" ]; do
        rmdir "$CFG/core/$1/$2$_i" || fail "rmdir $1/$2$_i"
        _i=$((_i + 1))
    done
}
# wait_none PID SECS -- until PID holds none of the uio in /tmp/uio-$PFX
wait_none() {
    _n=$(($2 * 10))
    until [ "$(served "$1")" -eq 0 ]; do
        [ $_n -le 0 ] && { diag; fail "daemon still holds $(served "$1") devices $2 s after removal"; }
        sleep 0.1; _n=$((_n - 1))
    done
}

# fio_all NAME EXTRA... -- one fio job per LUN of DEVS, all at once: in fio processes of
#   FIO_GROUP (100) jobs each, run side by side (1,000 jobs in one fio took ~15 s of fio's CPU
#   each to start in TCG while tcmud idled: 11 started after 178 s), disk_util=0 (fio's disk
#   statistics look devices up in sysfs for every job)
fio_all() {
    _name=$1; shift
    rm -f /tmp/"$_name".g*.fio /tmp/"$_name".g*.out
    _g=0 _k=0
    for _d in $DEVS; do
        _jobs=/tmp/$_name.g$_g.fio
        if [ "$_k" = 0 ]; then
            {
                echo "[global]"
                echo "ioengine=libaio"; echo "direct=1"; echo "iodepth=$QD"; echo "rw=randwrite"
                echo "bs=4k"; echo "size=$FIO_SIZE"; echo "verify=crc32c"; echo "verify_fatal=1"
                echo "thread"; echo "group_reporting=0"; echo "disk_util=0"
            } > "$_jobs"
        fi
        { echo "[${_d#/dev/}]"; echo "filename=$_d"; } >> "$_jobs"
        _k=$((_k + 1))
        [ "$_k" -ge "${FIO_GROUP:-100}" ] && { _g=$((_g + 1)); _k=0; }
    done
    (
        _pids=""
        for _jobs in /tmp/"$_name".g*.fio; do
            fio "$@" --output-format=terse --terse-version=3 "$_jobs" > "${_jobs%.fio}.out" 2>&1 &
            _pids="$_pids $!"
        done
        _rc=0
        for _p in $_pids; do wait "$_p" || _rc=1; done
        exit $_rc
    ) &
    _fp=$!
    # every WIN_S (5) s while fio runs: each LUN's 4 KiB blocks written so far (sectors / 8),
    #   for the window where every job runs (window below)
    for _d in $DEVS; do echo "/sys/block/${_d#/dev/}/stat"; done > /tmp/"$_name".stats
    (
        while kill -0 "$_fp" 2>/dev/null; do
            printf '%s' "$(now_cs)"
            xargs cat < /tmp/"$_name".stats | awk '{ printf " %d", $7 / 8 }'
            echo
            sleep "${WIN_S:-5}"
        done
    ) > /tmp/"$_name".win &
    _sp=$!
    fio_watch "$_name" "$_fp"
    wait "$_fp"; _rc=$?
    wait "$_sp"
    cat /tmp/"$_name".g*.out > "/tmp/$_name.out"
    [ $_rc = 0 ] || { tail -n 30 "/tmp/$_name.out"; diag; fail "fio $_name"; }
}
# io_totals -> "reads R writes W inflight F luns_idle Z": /sys/block/sdX/stat summed over DEVS
#   (reads and writes completed, requests in flight; Z = LUNs with no request completed yet)
io_totals() {
    for _d in $DEVS; do echo "/sys/block/${_d#/dev/}/stat"; done | xargs cat |
        awk '{ r += $1; w += $5; f += $9; if ($1 + $5 == 0) z++ }
            END { printf "reads %d writes %d inflight %d luns_idle %d", r, w, f, z }'
}
# fio_cpu / fio_threads -> CPU seconds and threads of every fio process
fio_cpu() { for _f in $(pidof fio); do cat "/proc/$_f/stat" 2>/dev/null; done | awk '{ t += $14 + $15 } END { printf "%.1f", t / 100 }'; }
fio_threads() { for _f in $(pidof fio); do cat "/proc/$_f/status" 2>/dev/null; done | awk '/^Threads:/{ t += $2 } END { print t + 0 }'; }
# cpu_s PID -> user+system CPU seconds of the process (all threads)
cpu_s() { awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo "-"; }
# threads_dump PID -- the daemon's threads: name, state, wchan and kernel stack each; with
#   /vmlab/bin/eu-stack (the host's, passed by bench-many-luns.sh when it has one) also the
#   user-space stack of every thread (symbols from the binary's symbol table)
threads_dump() {
    for _k in /proc/"$1"/task/*; do
        echo "  task $(cat "$_k/comm") state $(awk '{ print $3 }' "$_k/stat") wchan $(cat "$_k/wchan" 2>/dev/null)"
        sed 's/^/      /' "$_k/stack" 2>/dev/null | head -n 8
    done | head -n 300
    if [ -x /vmlab/bin/eu-stack ]; then
        echo "---- eu-stack -p $1 ----"
        /vmlab/bin/eu-stack -p "$1" 2>&1 | head -n 1500
        echo "---- end eu-stack ----"
    fi
}
# thread_cpu PID SECS -- CPU seconds each of the daemon's threads used over SECS (summed by
#   thread name): which threads keep an idle daemon busy
thread_cpu() {
    cp "/proc/$1/stat" /tmp/pstat.a
    for _k in /proc/"$1"/task/*; do echo "$(cat "$_k/comm") $(awk '{ print $14 + $15 }' "$_k/stat")"; done | sort > /tmp/tcpu.a
    sleep "$2"
    cp "/proc/$1/stat" /tmp/pstat.b
    for _k in /proc/"$1"/task/*; do echo "$(cat "$_k/comm") $(awk '{ print $14 + $15 }' "$_k/stat")"; done | sort > /tmp/tcpu.b
    echo "MANY $PH idle_cpu over $2 s: $(awk 'NR == FNR { a[$1] += $2; next } { b[$1] += $2 }
        END { for (k in b) if (b[k] - a[k] > 0) printf "%s %.2f s, ", k, (b[k] - a[k]) / 100 }' /tmp/tcpu.a /tmp/tcpu.b)"
    # the whole process (threads that ended in between included): CPU seconds per second
    echo "MANY $PH idle_cpu_total secs $2 cpu_s $(awk -v s="$2" 'NR == FNR { a = $14 + $15; next }
        { printf "%.2f per_s %.3f", ($14 + $15 - a) / 100, ($14 + $15 - a) / 100 / s }' /tmp/pstat.a /tmp/pstat.b)"
}
# fio_watch NAME FIO_PID -- while fio runs (it prints nothing before it ends): every
#   WATCH seconds (30) one "MANY <backend> progress" line (I/Os completed over all LUNs, in
#   flight, LUNs with none done yet, CPU seconds of the daemon and of fio), so a slow pass
#   and a stuck one can be told apart; when nothing completed for STALL seconds (180), one
#   dump: the daemon's threads (state, wchan, kernel stack), fio's thread states, the
#   daemon's log and dmesg tails
fio_watch() {
    _ws=$(now_cs) _wl="" _wq=$(now_cs) _wd=0
    while kill -0 "$2" 2>/dev/null; do
        _n=$((${WATCH:-30} * 10))
        while [ $_n -gt 0 ] && kill -0 "$2" 2>/dev/null; do sleep 0.1; _n=$((_n - 1)); done
        kill -0 "$2" 2>/dev/null || break
        _t=$(io_totals)
        echo "MANY $PH progress $1 secs $(secs "$_ws" "$(now_cs)") $_t daemon_cpu_s $(cpu_s "$PID") fio_cpu_s $(fio_cpu) fio_threads $(fio_threads)"
        _io=$(echo "$_t" | cut -d' ' -f1-4)
        if [ "$_io" != "$_wl" ]; then
            _wl=$_io _wq=$(now_cs)
        elif [ $_wd = 0 ] && [ $(( ($(now_cs) - _wq) / 100 )) -ge "${STALL:-180}" ]; then
            _wd=1
            echo "MANY $PH stalled $1 no I/O completed for ${STALL:-180} s: $_t"
            threads_dump "$PID"
            echo "  fio thread states: $(for _f in $(pidof fio); do for _k in /proc/"$_f"/task/*; do awk '{ print $3 }' "$_k/stat"; done; done | sort | uniq -c | tr -s ' \n' ' ')"
            DIAG_LINES=40 diag
        fi
    done
}
# iops NAME -> "luns L errors E iops_min A iops_mean B iops_max C total T" (write IOPS per job,
#   one decimal: from the KiB written and the job's runtime, fio's own IOPS field being an
#   integer that reads 0 below 1 -- 1,000 LUNs in TCG do ~0.2 each)
iops() {
    awk -F';' '/^3;/{ n++; e += $5; v = ($50 > 0) ? $47 / 4 * 1000 / $50 : 0; t += v
            if (n == 1 || v < lo) lo = v; if (v > hi) hi = v }
        END { printf "luns %d errors %d iops_min %.1f iops_mean %.1f iops_max %.1f total %.1f", n, e, lo, n ? t / n : 0, hi, t }' "/tmp/$1.out"
}

# window NAME -> "win_s S samples K iops_min A iops_mean B iops_max C" (or "win_s 0 ..."):
#   per-LUN write IOPS over the window where every job runs -- from the first sample where
#   every LUN has written a block to the last one where none has written all of its FIO_SIZE
#   -- so the staggered start of 1,000 jobs (minutes in TCG) does not enter the spread, as it
#   does in each job's own IOPS (iops above: a job that runs while others start or have ended
#   runs faster)
window() {
    case $FIO_SIZE in *k) _kib=${FIO_SIZE%k};; *m) _kib=$((${FIO_SIZE%m} * 1024));; esac
    awk -v total=$((_kib / 4)) '
        { lo = $2; hi = $2; for (i = 3; i <= NF; i++) { if ($i < lo) lo = $i; if ($i > hi) hi = $i }
          if (!t0 && lo > 0) { t0 = $1; for (i = 2; i <= NF; i++) a[i] = $i }
          if (t0 && hi < total) { t1 = $1; k++; n = NF - 1; for (i = 2; i <= NF; i++) b[i] = $i } }
        END {
            if (!t0 || t1 <= t0) { print "win_s 0 samples 0 iops_min - iops_mean - iops_max -"; exit }
            s = (t1 - t0) / 100
            for (i = 2; i <= n + 1; i++) { v = (b[i] - a[i]) / s; t += v
                if (i == 2 || v < mn) mn = v; if (v > mx) mx = v }
            printf "win_s %.1f samples %d iops_min %.2f iops_mean %.2f iops_max %.2f", s, k, mn, t / n, mx }' "/tmp/$1.win"
}

phase() {
    PH=$1
    case $PH in
        tcmud|old)
            # shellcheck disable=SC2034 # TCMUD_LOG_LEVEL and TCMUD are read by tcmud-lib.sh
            TCMUD_LOG_LEVEL=$LOGF
            if [ "$PH" = old ]; then
                TCMUD=/vmlab/bin/tcmud-old HBA=user_3 PFX=o FIRST=$((2 * N)) POOL=old
            else
                # shellcheck disable=SC2034 # read by tcmud-lib.sh
                TCMUD=/vmlab/bin/tcmud HBA=user_1 PFX=t FIRST=0 POOL=many
            fi
            tcmud_write_config $POOL:$((N * SIZE_MB * 2))MiB:64KiB
            tcmud_start
            PID=$TCMUD_PID CFGP=thin/$POOL/lun CFGS=""
            ;;
        runner)
            mkdir -p /tmp/r
            _i=0
            while [ $_i -lt "$N" ]; do truncate -s "$SIZE" "/tmp/r/lun$_i.img"; _i=$((_i + 1)); done
            runner_launch > /tmp/runner.out 2>&1 &
            PID=$!
            runner_ready "$PID" 60 || { cat /tmp/runner.out; fail "tcmu-runner not ready"; }
            HBA=user_2 PFX=r FIRST=$N CFGP=qcow//tmp/r/lun CFGS=.img
            ;;
    esac
    echo "MANY $PH start $(stats "$PID")"
    t0=$(now_cs)
    create_all "$HBA" "$PFX" "$CFGP" "$CFGS"
    t1=$(now_cs)
    uio_list "$PFX"
    [ "$(wc -l < "/tmp/uio-$PFX")" = "$N" ] || fail "$(wc -l < "/tmp/uio-$PFX") uio devices for $N backstores"
    if ! wait_all "$PID" $((120 + N / 5)); then
        # e.g. out of file descriptors: report how far it got, clean up, next daemon
        echo "MANY $PH served $(served "$PID") of $N $(stats "$PID")"
        echo "MANY $PH limits $(grep 'open files' "/proc/$PID/limits" | tr -s ' ') maps $(wc -l < "/proc/$PID/maps")"
        threads_dump "$PID"
        DIAG_LINES=40 diag
        remove_all "$HBA" "$PFX" -
        case $PH in tcmud|old) tcmud_stop;; runner) kill -TERM "$PID"; wait "$PID";; esac
        return 0
    fi
    t2=$(now_cs)
    attach_all "$HBA" "$PFX" "$FIRST"
    t3=$(now_cs)
    echo "MANY $PH add_s $(secs "$t0" "$t2") create_s $(secs "$t0" "$t1") attach_s $(secs "$t2" "$t3")"
    echo "MANY $PH idle $(stats "$PID")"
    smaps "$PID" idle
    thread_cpu "$PID" 30
    if [ "$FIO_MB" != 0 ]; then
        t4=$(now_cs)
        fio_all "write-$PH"
        t5=$(now_cs)
        echo "MANY $PH fio $(iops "write-$PH") secs $(secs "$t4" "$t5")"
        echo "MANY $PH window $(window "write-$PH")"
        echo "MANY $PH after_io $(stats "$PID")"
        smaps "$PID" after_io
    fi
    case $PH in
        tcmud|old) tcmud_stop; tcmud_start; PID=$TCMUD_PID ;;
        runner)
            kill -TERM "$PID"; wait "$PID"
            runner_launch >> /tmp/runner.out 2>&1 &
            PID=$!
            ;;
    esac
    t6=$(now_cs)
    wait_all "$PID" $((120 + N / 5)) || { threads_dump "$PID"; diag; fail "$PH adopted $(served "$PID") of $N devices"; }
    t7=$(now_cs)
    if [ "$FIO_MB" != 0 ]; then
        fio_all "verify-$PH" --verify_only
        echo "MANY $PH adopt_s $(secs "$t6" "$t7") verify $(iops "verify-$PH" | cut -d' ' -f1-4)"
    else
        echo "MANY $PH adopt_s $(secs "$t6" "$t7") verify luns 0 errors -"
    fi
    echo "MANY $PH adopted $(stats "$PID")"
    t8=$(now_cs)
    remove_all "$HBA" "$PFX" "$FIRST"
    t9=$(now_cs)
    wait_none "$PID" 600
    t10=$(now_cs)
    echo "MANY $PH remove_s $(secs "$t8" "$t10") unlink_rmdir_s $(secs "$t8" "$t9")"
    echo "MANY $PH removed $(stats "$PID")"
    case $PH in
        tcmud|old) tcmud_stop;;
        runner) kill -TERM "$PID"; wait "$PID";;
    esac
}

for b in $BACKENDS; do phase "$b"; done
dmesg | grep -iE 'I/O error|ring broken|timed out' | tail -n 10
dmesg | grep -qiE 'I/O error|ring broken' && fail "kernel errors during the benchmark"
grep -a -iE 'warn|error' "$TCMUD_LOG" 2>/dev/null | tail -n 5
vmsg "benchmark done"
exit 0
