#!/bin/sh
# run-batch.sh -- guest test that runs several scenario scripts in ONE boot, each as its own
# process under its own timeout, and puts the kernel back into a fresh state in between
# (daemons killed, mounts, LUNs and backstores removed, target_core_user reloaded so
# module-wide state such as netlink reply support starts over, /tmp emptied).
# Scenarios are /vmlab/scenarios/*.sh (in name order). Markers for run-scenarios.sh:
#   VMLAB-SCENARIO-BEGIN: <name>
#   VMLAB-SCENARIO-END: <name> rc=<status> secs=<guest seconds>
#   VMLAB-BATCH-ABORT: <why>     (the kernel state could not be reset: the host reboots
#                                 for the scenarios that did not run)
. /vmlab/guest-lib.sh

KVER=$(uname -r)

# kill_leftovers NAMES -- kill processes a scenario left behind, by pid (this is our own VM)
kill_leftovers() {
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = $$ ] && continue
        c=$(cat "$p/comm" 2>/dev/null) || continue
        case " $1 " in *" $c "*) kill -9 "$pid" 2>/dev/null;; esac
    done
    sleep 0.5
}

# bg SECS CMD... -- CMD in the background with a deadline (configfs writes may block)
bg() {
    _s=$1; shift
    "$@" &
    _p=$!
    _n=$((_s * 10))
    while kill -0 $_p 2>/dev/null; do
        [ $_n -le 0 ] && return 124
        sleep 0.1; _n=$((_n - 1))
    done
    wait $_p
}

reset_step() { echo "VMLAB-RESET: $*" >&2; }

reset_target() {
    # I/O first; daemons stay up while their LUNs go (they answer the final SYNCHRONIZE
    # CACHE and REMOVED_DEVICE; without a daemon each LUN removal waits for cmd_time_out)
    kill_leftovers "fio dd"
    for m in $(grep -E ' /mnt/' /proc/mounts | cut -d' ' -f2); do umount -l "$m" 2>/dev/null; done
    # devices nobody serves any more (the scenario stopped its daemon): block them and fail
    # what is in their rings, so the final SYNCHRONIZE CACHE of the LUN removal gets BUSY
    # at once instead of waiting for cmd_time_out
    for d in "$CFG"/core/user_*/*/; do
        d=${d%/}; [ -e "$d/action/block_dev" ] || continue
        u=$(tcmu_uio "$(basename "$d")") || continue
        held=0
        for fd in /proc/[0-9]*/fd/*; do [ "$(readlink "$fd" 2>/dev/null)" = "/dev/$u" ] && { held=1; break; }; done
        [ $held = 1 ] && continue
        echo 1 > "$d/action/block_dev" 2>/dev/null; echo 2 > "$d/action/reset_ring" 2>/dev/null
    done
    L=$CFG/loopback
    for w in "$L"/naa.*; do
        [ -d "$w" ] || continue
        for t in "$w"/tpgt_*; do
            for l in "$t"/lun/lun_*; do
                [ -d "$l" ] || continue
                for x in "$l"/*; do [ -L "$x" ] && { bg 150 rm "$x" || { reset_step "unlink $x"; return 1; }; }; done
                rmdir "$l" || { reset_step "rmdir $l"; return 1; }
            done
            printf NULL > "$t/nexus" 2>/dev/null
            rmdir "$t" || { reset_step "rmdir $t"; return 1; }
        done
        rmdir "$w" || { reset_step "rmdir $w"; return 1; }
    done
    for h in "$CFG"/core/*_[0-9]*; do
        [ -d "$h" ] || continue
        for d in "$h"/*; do
            [ -d "$d" ] && { bg 60 rmdir "$d" || { reset_step "rmdir $d"; return 1; }; }
        done
        rmdir "$h" || { reset_step "rmdir $h"; return 1; }
    done
    kill_leftovers "tcmud tcmud-fault tcmud-rbd tcmu-runner dbus-daemon fio dd ceph-osd ceph-mon rbd"
    m=/sys/module/target_core_user/parameters
    echo 0 > $m/block_netlink 2>/dev/null
    # target_core_user holds module-wide state (netlink reply support, block_netlink):
    # reload it (tcm_loop keeps a reference of its own and stays)
    rmmod target_core_user || { reset_step "rmmod target_core_user"; return 1; }
    insmod "/lib/modules/$KVER/$(grep '/target_core_user.ko$' /etc/vmlab/modules.load)" ||
        { reset_step "insmod target_core_user"; return 1; }
    rm -rf /tmp/* /tmp/.[!.]* 2>/dev/null
    dmesg -c > /dev/null
    return 0
}

first=1
for sc in /vmlab/scenarios/*.sh; do
    [ -f "$sc" ] || continue
    name=$(basename "$sc" .sh)
    if [ $first = 0 ]; then
        if ! reset_target; then
            echo "VMLAB-BATCH-ABORT: could not reset the kernel state before $name"
            # shellcheck disable=SC2010 # a diagnostic listing
            ls -R "$CFG/loopback" "$CFG/core" 2>&1 | grep -v alua | head -n 30; dmesg | tail -n 20
            exit 3
        fi
    fi
    first=0
    tmo=$(sed -n 's/^# timeout: *\([0-9]*\).*/\1/p' "$sc" | head -n1)
    echo "VMLAB-SCENARIO-BEGIN: $name"
    t0=$(cut -d. -f1 /proc/uptime)
    (cd /tmp && timeout -s KILL "${tmo:-300}" sh "$sc")
    rc=$?
    echo "VMLAB-SCENARIO-END: $name rc=$rc secs=$(( $(cut -d. -f1 /proc/uptime) - t0 ))"
done
exit 0
