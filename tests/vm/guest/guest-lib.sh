# shellcheck shell=sh
# guest-lib.sh -- generic LIO/TCMU helpers for guest scripts (busybox sh), adapted from the
# project's vmlab recipe. Installed at /vmlab/guest-lib.sh. Use:  . /vmlab/guest-lib.sh
# tcmud-specific helpers (start/stop the daemon, checks) are in /vmlab/tcmud-lib.sh.
#
# Environment provided by /init (from /vmlab/env): PATH (with /vmlab/bin, /vmlab/extra),
# VMLAB_TEST_ARGS.

CFG=/sys/kernel/config/target

vmsg() { echo "GUEST: $*"; }
fail() { echo "GUEST-FAIL: $*"; exit 1; }

# wait_for PATH_OR_GLOB [SECONDS]  -- poll (0.1 s) until something matches; return 1 on timeout.
wait_for() {
    _w_n=$(( ${2:-10} * 10 ))
    while [ "$_w_n" -gt 0 ]; do
        for _w_p in $1; do [ -e "$_w_p" ] && return 0; done
        sleep 0.1; _w_n=$((_w_n - 1))
    done
    return 1
}

# tcmu_create HBA DEV SIZE_BYTES DEV_CONFIG [KEY=VAL ...]
#   Creates $CFG/core/HBA/DEV (HBA must be named user_<N>), writes dev_config/dev_size
#   (and any extra control parameters, e.g. hw_block_size=4096, max_data_area_mb=8,
#   nl_reply_supported=-1) to "control", then enables it. Prints the backstore dir.
#   Enabling creates /dev/uioN (uio name "tcm-user/<hba#>/<DEV>/<DEV_CONFIG>") and multicasts
#   TCMU_CMD_ADDED_DEVICE on the TCM-USER generic-netlink group "config". The kernel waits for
#   the daemon's TCMU_CMD_ADDED_DEVICE_DONE reply only if the daemon enabled replies with
#   TCMU_CMD_SET_FEATURES *and* nl_reply_supported > 0 (default 0: no wait). Pass e.g.
#   nl_reply_supported=1 as an extra KEY=VAL to exercise the reply path.
tcmu_create() {
    _hba=$1 _dev=$2 _size=$3 _cfgstr=$4; shift 4
    _d=$CFG/core/$_hba/$_dev
    mkdir -p "$_d" || return 1
    printf %s "dev_config=$_cfgstr" > "$_d/control" || return 1
    printf %s "dev_size=$_size" > "$_d/control" || return 1
    for _kv in "$@"; do printf %s "$_kv" > "$_d/control" || return 1; done
    echo 1 > "$_d/enable" || return 1
    echo "$_d"
}

# tcmu_uio DEV -> prints uioN whose name is tcm-user/<hba>/<DEV>/<config>
tcmu_uio() {
    for _u in /sys/class/uio/uio*; do
        [ -e "$_u/name" ] || continue
        case $(cat "$_u/name") in tcm-user/*/"$1"/*) basename "$_u"; return 0;; esac
    done
    return 1
}

# tcmu_remove HBA DEV  -- rmdir the backstore (must be unlinked from all LUNs first)
tcmu_remove() {
    rmdir "$CFG/core/$1/$2" && rmdir "$CFG/core/$1" 2>/dev/null
    return 0
}

LOOP_WWN=${LOOP_WWN:-naa.5001405a00000001}
LOOP_NEXUS=${LOOP_NEXUS:-naa.5001405b00000001}

# loop_attach BACKSTORE_DIR [LUN] [TIMEOUT]  -- export the backstore through tcm_loop
#   (configfs: loopback/$LOOP_WWN/tpgt_1/lun/lun_N -> symlink to the backstore, nexus
#   $LOOP_NEXUS). Prints the resulting /dev/sdX. The symlink() syscall itself triggers a
#   synchronous SCSI scan (INQUIRY, ...) that is served by the TCMU daemon, so the daemon
#   must already be running. The link is created in the background so a hang shows up as
#   a timeout instead of blocking the whole test.
loop_attach() {
    _bs=$1 _lun=${2:-0} _to=${3:-60}
    _t=$CFG/loopback/$LOOP_WWN/tpgt_1
    mkdir -p "$_t/lun/lun_$_lun" || return 1
    if [ ! -s "$_t/nexus" ] || [ -z "$(cat "$_t/nexus" 2>/dev/null)" ]; then
        printf %s "$LOOP_NEXUS" > "$_t/nexus" || return 1
    fi
    ln -s "$_bs" "$_t/lun/lun_$_lun/$(basename "$_bs")" &
    _lnpid=$!
    if ! wait_for "/sys/devices/tcm_loop_0/*/host*/target*:0:1/*:0:1:$_lun/block/*" "$_to"; then
        echo "GUEST: loop_attach: no block device after ${_to}s" >&2
        return 1
    fi
    wait $_lnpid
    for _b in /sys/devices/tcm_loop_0/*/host*/target*:0:1/*:0:1:"$_lun"/block/*; do
        wait_for "/dev/$(basename "$_b")" 10
        echo "/dev/$(basename "$_b")"; return 0
    done
    return 1
}

# loop_sg LUN -> prints /dev/sgN for the tcm_loop LUN (sg module loaded)
loop_sg() {
    for _b in /sys/devices/tcm_loop_0/*/host*/target*:0:1/*:0:1:"${1:-0}"/scsi_generic/*; do
        [ -e "$_b" ] && { echo "/dev/$(basename "$_b")"; return 0; }
    done
    return 1
}

# loop_detach [LUN]  -- remove the LUN (the SCSI device is removed synchronously)
loop_detach() {
    _t=$CFG/loopback/$LOOP_WWN/tpgt_1
    for _l in "$_t/lun/lun_${1:-0}"/*; do [ -L "$_l" ] && rm "$_l"; done
    rmdir "$_t/lun/lun_${1:-0}"
}

# loop_teardown -- remove nexus/tpg/wwn after all LUNs are gone
loop_teardown() {
    _t=$CFG/loopback/$LOOP_WWN/tpgt_1
    [ -d "$_t" ] || return 0
    printf NULL > "$_t/nexus" 2>/dev/null
    rmdir "$_t" && rmdir "$CFG/loopback/$LOOP_WWN"
}

# start_dbus -- start a system bus (dbus-daemon --system); needed only if the daemon wants
# to own a name on the system bus (tcmu-runner works without it, see README).
start_dbus() {
    mkdir -p /run/dbus
    dbus-daemon --system --fork --nopidfile 2>&1 && wait_for /run/dbus/system_bus_socket 10
}

# mbps BYTES SECONDS_x100 -> "X.YY MB/s"
mbps() { awk -v b="$1" -v t="$2" 'BEGIN{ if (t<=0) t=1; printf "%.2f MB/s", b/1048576/(t/100) }'; }

# now_cs -> uptime in centiseconds (for timing)
now_cs() { awk '{ printf "%d", $1*100 }' /proc/uptime; }
