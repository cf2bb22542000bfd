# shellcheck shell=sh
# tcmud-lib.sh -- tcmud helpers for guest scenario scripts (busybox sh). Installed at
# /vmlab/tcmud-lib.sh; sources /vmlab/guest-lib.sh. Use:  . /vmlab/tcmud-lib.sh
#
# Conventions of the scenarios:
#   - print "VERIFIED: <what>" for every check that passed (run-scenarios.sh lists them),
#     "GUEST-FAIL: <why>" (fail) and exit non-zero on the first failed check;
#   - tcmud runs as $TCMUD (default /vmlab/bin/tcmud) with a config written by
#     tcmud_write_config; its stdout/stderr go to $TCMUD_LOG;
#   - pools live on the guest tmpfs under /tmp/pools/<name>.
. /vmlab/guest-lib.sh

TCMUD=${TCMUD:-/vmlab/bin/tcmud}
TCMUD_LOG=${TCMUD_LOG:-/tmp/tcmud.log}
TCMUD_CONF=${TCMUD_CONF:-/tmp/tcmud.toml}
TCMUD_PID=""

verified() { echo "VERIFIED: $*"; }

# check COND_DESCRIPTION CMD... -- run CMD; on success print VERIFIED, else diagnose + fail
check() {
    _c_what=$1; shift
    if "$@"; then verified "$_c_what"; else diag; fail "$_c_what"; fi
}

# tcmud_write_config [netlink_replies=false] POOL_SPEC... > file
#   POOL_SPEC = name:capacity[:chunk_size]  e.g. p1:256MiB:64KiB
#   Writes $TCMUD_CONF (auto_create = true for every pool, pools under /tmp/pools/,
#   file// images allowed under /tmp: file_roots = ["/tmp"]).
tcmud_write_config() {
    _nr=false
    case $1 in netlink_replies=*) _nr=${1#netlink_replies=}; shift;; esac
    {
        echo "[daemon]"
        echo "recovery = \"reset\""
        echo "netlink_replies = $_nr"
        echo "log_level = \"${TCMUD_LOG_LEVEL:-info,tcmud::supervisor=debug}\""
        echo "log_format = \"text\""
        echo "file_roots = [\"/tmp\"]"
        for _p in "$@"; do
            _pn=${_p%%:*}; _rest=${_p#*:}; _cap=${_rest%%:*}; _cs=64KiB
            case $_rest in *:*) _cs=${_rest#*:};; esac
            echo ""
            echo "[[pool]]"
            echo "name = \"$_pn\""
            echo "path = \"/tmp/pools/$_pn\""
            echo "chunk_size = \"$_cs\""
            echo "capacity = \"$_cap\""
            echo "low_water_pct = 90"
            echo "auto_create = true"
        done
    } > "$TCMUD_CONF"
}

# tcmud_start [EXTRA ARGS...] -- start the daemon in the background (sets TCMUD_PID) and wait
# (30 s) for its "tcmud ready" log line; fails if it exits or never gets ready.
# shellcheck disable=SC2120 # the arguments are optional
tcmud_start() {
    [ -x "$TCMUD" ] || fail "no tcmud binary at $TCMUD"
    echo "==== tcmud start $(cut -d' ' -f1 /proc/uptime)" >> "$TCMUD_LOG"
    _from=$(wc -l < "$TCMUD_LOG")
    "$TCMUD" --config "$TCMUD_CONF" "$@" >> "$TCMUD_LOG" 2>&1 &
    TCMUD_PID=$!
    _n=300
    until tail -n +"$_from" "$TCMUD_LOG" | grep -q 'tcmud ready'; do
        kill -0 "$TCMUD_PID" 2>/dev/null || { wait "$TCMUD_PID"; _rc=$?; diag; fail "tcmud exited at startup (status $_rc)"; }
        [ $_n -le 0 ] && { diag; fail "tcmud not ready 30 s after start"; }
        sleep 0.1; _n=$((_n - 1))
    done
    vmsg "tcmud ready (pid $TCMUD_PID)"
}

# tcmud_stop [TIMEOUT_S] -- SIGTERM, wait for the exit; prints the exit status; fails on a hang.
#   A daemon frozen by tcmud_freeze gets the SIGTERM while still frozen, then SIGCONT: it
#   wakes up with the signal pending and whatever was in flight when it was frozen.
# shellcheck disable=SC2120 # the argument is optional
tcmud_stop() {
    [ -n "$TCMUD_PID" ] || return 0
    kill -TERM "$TCMUD_PID" 2>/dev/null
    kill -CONT "$TCMUD_PID" 2>/dev/null
    _n=$(( ${1:-30} * 10 ))
    while kill -0 "$TCMUD_PID" 2>/dev/null; do
        [ $_n -le 0 ] && { diag; fail "tcmud did not exit ${1:-30}s after SIGTERM"; }
        sleep 0.1; _n=$((_n - 1))
    done
    wait "$TCMUD_PID"; TCMUD_RC=$?
    vmsg "tcmud (pid $TCMUD_PID) exited with status $TCMUD_RC after SIGTERM"
    if [ "$TCMUD_RC" -ge 128 ]; then
        # Killed by a signal: where (the kernel logs a segfault's address and library).
        echo "---- tcmud killed by signal $((TCMUD_RC - 128)); its last log lines and the kernel's:"
        tail -n 40 "$TCMUD_LOG"
        dmesg | grep -iE 'segfault|traps:|general protection' | tail -n 5
    fi
    TCMUD_PID=""
    return 0
}

# tcmud_kill9 -- SIGKILL the daemon and reap it.
tcmud_kill9() {
    [ -n "$TCMUD_PID" ] || return 0
    kill -KILL "$TCMUD_PID" 2>/dev/null
    wait "$TCMUD_PID" 2>/dev/null
    TCMUD_PID=""
}

tcmud_alive() { [ -n "$TCMUD_PID" ] && kill -0 "$TCMUD_PID" 2>/dev/null; }

# tcmud_freeze -- SIGSTOP the daemon: every thread stops where it is, commands it fetched stay
#   in flight and new ones pile up in the ring, so a workload cannot end behind the test's back.
tcmud_freeze() { [ -n "$TCMUD_PID" ] && kill -STOP "$TCMUD_PID"; }

# writes_done /dev/sdX -> writes the initiator has completed on the disk (/sys/block/X/stat)
writes_done() { awk '{ print $5 }' "/sys/block/${1#/dev/}/stat"; }

# wait_writes /dev/sdX N [SECS] [PID] -- wait until N more writes than now have completed on
#   the disk (default 60 s); fails if PID (the writer) exits first. Waits for what "the
#   workload is under way" means instead of sleeping a time that depends on the machine.
wait_writes() {
    _ww_goal=$(( $(writes_done "$1") + $2 ))
    _ww_n=$(( ${3:-60} * 20 ))
    until [ "$(writes_done "$1")" -ge "$_ww_goal" ]; do
        [ -n "$4" ] && ! kill -0 "$4" 2>/dev/null && return 1
        [ $_ww_n -le 0 ] && return 1
        sleep 0.05; _ww_n=$((_ww_n - 1))
    done
}

# runner_ready PID [SECS] -- wait (default 30 s) until tcmu-runner (PID) listens for TCM-USER
#   events: it holds a generic-netlink socket (protocol 16) that joined a multicast group.
#   Devices created after that are seen by it (it also adopts those that existed before).
runner_ready() {
    _rr_n=$(( ${2:-30} * 10 ))
    while :; do
        kill -0 "$1" 2>/dev/null || return 1
        for _rr_i in $(awk '$2 == 16 && $4 != "00000000" { print $NF }' /proc/net/netlink); do
            # shellcheck disable=SC2010 # fd symlink targets: ls -l is what shows them
            ls -l /proc/"$1"/fd 2>/dev/null | grep -q "socket:\[$_rr_i\]" && return 0
        done
        [ $_rr_n -le 0 ] && return 1
        sleep 0.1; _rr_n=$((_rr_n - 1))
    done
}

# wait_released PID DEV [SECS] -- wait (default 30 s) until PID no longer holds DEV's uio
wait_released() {
    _wr_n=$(( ${3:-30} * 10 ))
    while holds_uio "$1" "$2" 2>/dev/null; do
        [ $_wr_n -le 0 ] && return 1
        sleep 0.1; _wr_n=$((_wr_n - 1))
    done
}

# wait_content FILE VALUE [SECS] -- wait (10 s) until FILE reads VALUE (e.g. a configfs
# attribute tcmud writes in the background)
wait_content() {
    _wc_n=$(( ${3:-10} * 10 ))
    until [ "$(cat "$1" 2>/dev/null)" = "$2" ]; do
        [ $_wc_n -le 0 ] && return 1
        sleep 0.1; _wc_n=$((_wc_n - 1))
    done
}

# pool_json POOL -> `tcmud pool info /tmp/pools/POOL --json` (daemon must be stopped)
pool_json() { "$TCMUD" pool info "/tmp/pools/$1" --json; }

# json_num JSON KEY -> first numeric value of "KEY": N in JSON (flat scan, good enough here)
json_num() { echo "$1" | tr ',{}' '\n\n\n' | sed -n "s/^[[:space:]]*\"$2\"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p" | head -n1; }

# dmesg marks: dmesg_mark records the current length, dmesg_new prints lines since the mark
dmesg_mark() { DMESG_MARK=$(dmesg | wc -l); }
dmesg_new() { dmesg | tail -n +$(( ${DMESG_MARK:-0} + 1 )); }

# ring_errors -> prints kernel lines since the mark that indicate a broken/failed TCMU ring
#   (strings from drivers/target/target_core_user.c)
ring_errors() {
    dmesg_new | grep -E 'ring broken|ring is broken|Invalid addr to data page|UNKNOWN_OP|tcmu: |TCMU: |Unable to reconfigure|Mismatched commands|could not find device'
}

# diag -- dump the daemon log tail and the kernel log tail (on failures)
diag() {
    echo "---- tcmud log (tail) ----"; tail -n "${DIAG_LINES:-60}" "$TCMUD_LOG" 2>/dev/null
    [ -f /var/log/tcmu-runner.log ] && { echo "---- tcmu-runner.log (tail) ----"; tail -n 30 /var/log/tcmu-runner.log; }
    echo "---- dmesg (tail) ----"; dmesg | tail -n 40
    echo "---- end diag ----"
}

# fio_run NAME DEV RW BS SIZE [EXTRA FIO ARGS...] -- libaio, direct, iodepth 32 (override with
# extra args), crc32c verify for write workloads; fails with the fio output on error.
fio_run() {
    _fn=$1 _fd=$2 _frw=$3 _fbs=$4 _fsz=$5; shift 5
    _fv=""
    case $_frw in *write*|rw|randrw) _fv="--verify=crc32c --verify_fatal=1 --do_verify=1";;
    esac
    # shellcheck disable=SC2086
    if ! fio --name="$_fn" --filename="$_fd" --direct=1 --ioengine=libaio --iodepth=32 \
            --rw="$_frw" --bs="$_fbs" --size="$_fsz" $_fv "$@" \
            --output-format=terse --terse-version=3 > "/tmp/fio-$_fn.out" 2>&1; then
        cat "/tmp/fio-$_fn.out"; diag; fail "fio $_fn ($_frw bs=$_fbs size=$_fsz on $_fd)"
    fi
}

# fio_summary NAME -> "read X KiB/s Y IOPS, write X KiB/s Y IOPS" from a terse v3 output
fio_summary() {
    awk -F';' '/^3;/{printf "read %s KiB/s %s IOPS, write %s KiB/s %s IOPS", $7, $8, $48, $49}' "/tmp/fio-$1.out"
}

# sd_of LUN -> /dev/sdX of the tcm_loop LUN (empty if none)
sd_of() {
    for _b in /sys/devices/tcm_loop_0/*/host*/target*:0:1/*:0:1:"$1"/block/*; do
        [ -e "$_b" ] && { echo "/dev/$(basename "$_b")"; return 0; }
    done
    return 1
}

# make_pattern FILE MB -- random data file on tmpfs
make_pattern() { dd if=/dev/urandom of="$1" bs=1M count="$2" 2>/dev/null; }
sha() { sha256sum "$@" | cut -d' ' -f1; }

# holds_uio PID DEV -> true if process PID has DEV's /dev/uioN open (i.e. serves it)
holds_uio() {
    _hu=$(tcmu_uio "$2") || return 1
    for _fd in /proc/"$1"/fd/*; do
        [ "$(readlink "$_fd" 2>/dev/null)" = "/dev/$_hu" ] && return 0
    done
    return 1
}

# bg_wait SECS CMD... -- run CMD in the background and wait up to SECS for it; returns its
#   status, or 124 if it is still running (it is left behind: a configfs write waiting for a
#   netlink reply sleeps uninterruptibly, so neither `timeout` nor SIGKILL can end it).
bg_wait() {
    _bw_s=$1; shift
    "$@" &
    _bw_p=$!
    _bw_n=$((_bw_s * 10))
    while kill -0 $_bw_p 2>/dev/null; do
        if [ $_bw_n -le 0 ]; then
            echo "GUEST: '$*' still running after ${_bw_s}s" >&2
            return 124
        fi
        sleep 0.1; _bw_n=$((_bw_n - 1))
    done
    wait $_bw_p
}

# unstick_netlink -- abort kernel netlink commands waiting for a reply (they fail with EINTR)
unstick_netlink() {
    _m=/sys/module/target_core_user/parameters
    echo 1 > $_m/block_netlink 2>/dev/null
    echo 1 > $_m/reset_netlink 2>/dev/null
    echo 0 > $_m/block_netlink 2>/dev/null
}

# lun_create HBA DEV SIZE_BYTES DEV_CONFIG LUN [KEY=VAL...] -> prints /dev/sdX
#   user backstore (hw_max_sectors=1024 unless given, or unless LUN_KERNEL_DEFAULTS=1: then the
#   kernel's defaults, 128 sectors) + tcm_loop LUN, with timeouts.
lun_create() {
    _lh=$1 _ld=$2 _ls=$3 _lc=$4 _ll=$5; shift 5
    case " $* " in *" hw_max_sectors="*) ;; *)
        [ "${LUN_KERNEL_DEFAULTS:-0}" = 1 ] || set -- hw_max_sectors=1024 "$@";; esac
    bg_wait 30 tcmu_create "$_lh" "$_ld" "$_ls" "$_lc" "$@" > /dev/null ||
        { echo "GUEST: tcmu_create $_lh/$_ld ($_lc) failed or hung" >&2; unstick_netlink; return 1; }
    loop_attach "$CFG/core/$_lh/$_ld" "$_ll" 60
}

# lun_remove HBA DEV LUN -- unlink the LUN and rmdir the backstore (with timeouts)
lun_remove() {
    bg_wait 60 loop_detach "$3" || { echo "GUEST: LUN $3 unlink failed or hung" >&2; return 1; }
    bg_wait 30 rmdir "$CFG/core/$1/$2" || { echo "GUEST: rmdir $1/$2 failed or hung" >&2; unstick_netlink; return 1; }
    rmdir "$CFG/core/$1" 2>/dev/null
    return 0
}

# wait_log FROM_LINE REGEX [SECS] -- wait (default 30 s) until a tcmud log line after FROM_LINE
#   matches REGEX (extended, case-insensitive)
wait_log() {
    _wl_n=$(( ${3:-30} * 10 ))
    until tail -n +$(($1 + 1)) "$TCMUD_LOG" | grep -qiE "$2"; do
        [ $_wl_n -le 0 ] && return 1
        sleep 0.1; _wl_n=$((_wl_n - 1))
    done
}

# log_has REGEX -- the tcmud log matches (extended regex, case-insensitive)
log_has() { grep -qiE "$1" "$TCMUD_LOG"; }
# log_grep REGEX -> matching tcmud log lines without ANSI colour codes, timestamps cut off
log_grep() { grep -iE "$1" "$TCMUD_LOG" | tr -d '\033' | sed 's/\[[0-9;]*m//g; s/^[0-9T:.-]*Z *//'; }

# wait_served DEV... -- wait (10 s) until tcmud holds every named device's uio open
wait_served() {
    for _ws in "$@"; do
        _n=100
        until holds_uio "$TCMUD_PID" "$_ws"; do
            [ $_n -le 0 ] && { diag; fail "tcmud does not serve $_ws (uio not open) 10 s after start"; }
            sleep 0.1; _n=$((_n - 1))
        done
    done
}

# tcmud_restart DEV... -- SIGTERM, start again, wait until the named devices are adopted
tcmud_restart() { tcmud_stop; tcmud_start; wait_served "$@"; }

# allocated POOL -> allocated_chunks from `tcmud pool info --json` (daemon must be stopped)
allocated() {
    _j=$(pool_json "$1") || { echo "GUEST: tcmud pool info $1 failed: $_j" >&2; return 1; }
    echo "GUEST: pool $1: $_j" >&2
    json_num "$_j" allocated_chunks
}
