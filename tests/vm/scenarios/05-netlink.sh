#!/bin/sh
# 05-netlink.sh -- netlink replies and coexistence:
#   part A, netlink_replies = true and nl_reply_supported=1: enable (ADDED_DEVICE), resize
#     through attrib/dev_size (RECONFIG_DEVICE; the initiator sees the new capacity after a
#     rescan) and removal (REMOVED_DEVICE) all complete, i.e. tcmud answered each; a
#     foreign device (qcow//...) is neither served nor answered by tcmud. It is created with
#     nl_reply_supported=-1: the kernel turns 0 into the module-wide setting (1 once a
#     daemon sent SET_FEATURES), and nobody would answer, so its enable would never return.
#   part B, netlink_replies = false: tcmu-runner runs beside tcmud; tcmu-runner serves its
#     qcow// LUN while tcmud serves its thin/ LUN; both pass a dd verify. Both devices use
#     nl_reply_supported=-1 (tcmu-runner 1.5.4 enables replies module-wide and answers
#     every ADDED_DEVICE, also with an error for subtypes it has no handler for).
# timeout: 360
. /vmlab/tcmud-lib.sh

MB=1048576
A=$CFG/core/user_1
# ---------------------------------------------------------------- part A
tcmud_write_config netlink_replies=true p1:256MiB:64KiB
dmesg_mark
tcmud_start
n=300
until dmesg_new | grep -q 'command reply support 1'; do
    [ $n -le 0 ] && { diag; fail "kernel did not log 'command reply support 1' 30 s after tcmud was ready (no SET_FEATURES)"; }
    sleep 0.1; n=$((n - 1))
done
verified "tcmud sent SET_FEATURES: kernel logs '$(dmesg_new | grep -o 'tcmu daemon: command reply support 1.*' | head -n1)'"

SD=$(lun_create user_1 r0 $((32 * MB)) thin/p1/r0 0 nl_reply_supported=1) ||
    { diag; fail "enable with nl_reply_supported=1 did not complete (no ADDED_DEVICE_DONE?)"; }
[ "$(cat "$A/r0/attrib/nl_reply_supported")" = 1 ] || fail "nl_reply_supported not 1"
verified "enable with nl_reply_supported=1 completed (ADDED_DEVICE_DONE) -> $SD"
make_pattern /tmp/pat 8
dd if=/tmp/pat of="$SD" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "dd write"

# resize 32 -> 48 MiB through attrib/dev_size (kernel sends RECONFIG_DEVICE and waits)
bg_wait 30 sh -c "echo $((48 * MB)) > $A/r0/attrib/dev_size" ||
    { diag; unstick_netlink; fail "dev_size write did not complete (no RECONFIG_DEVICE_DONE?)"; }
verified "resize via attrib/dev_size completed (RECONFIG_DEVICE_DONE)"
echo 1 > "/sys/block/${SD#/dev/}/device/rescan"
n=100
until [ "$(cat "/sys/block/${SD#/dev/}/size")" = $((48 * MB / 512)) ] || [ $n -le 0 ]; do sleep 0.1; n=$((n - 1)); done
sectors=$(cat "/sys/block/${SD#/dev/}/size")
[ "$sectors" = $((48 * MB / 512)) ] || { sg_readcap "$SD"; diag; fail "after rescan the initiator sees $sectors sectors, want $((48 * MB / 512))"; }
dd if=/tmp/pat of="$SD" bs=1M seek=40 oflag=direct conv=fsync 2>/dev/null || fail "write in the grown range"
[ "$(dd if="$SD" bs=1M skip=40 count=8 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "grown range readback"
[ "$(dd if="$SD" bs=1M count=8 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "old data after resize"
verified "initiator sees the new capacity ($sectors sectors) after rescan; grown range and old data read back"

# MODE SELECT WCE with replies on: tcmud saves the choice in configfs, whose write waits for
# tcmud's own RECONFIG reply; the command must not wait for that (no cycle), the echo must
# not undo the choice, and the setting lands in configfs
CT=$(echo /sys/block/${SD#/dev/}/device/scsi_disk/*/cache_type)
for c in "write back:1" "write through:0" "write back:1"; do
    bg_wait 30 sh -c "echo '${c%:*}' > $CT" || { diag; unstick_netlink; fail "MODE SELECT (${c%:*}) did not complete with replies on"; }
    wait_content $A/r0/attrib/emulate_write_cache "${c#*:}" ||
        { diag; fail "emulate_write_cache is $(cat $A/r0/attrib/emulate_write_cache) 10 s after MODE SELECT (${c%:*})"; }
done
b2=$(sg_modes -p 0x08 "$SD" 2>/dev/null | awk '/Caching/ {c = 1} c && $1 == "00" {print $4; exit}')
[ -n "$b2" ] && [ $((0x$b2 & 4)) = 4 ] || { sg_modes -p 0x08 "$SD"; fail "caching page WCE != 1 after the last MODE SELECT (byte 2 = ${b2:-?})"; }
verified "MODE SELECT WCE 1/0/1 with replies on: each completed, saved in configfs (RECONFIG answered), device reports WCE=1"

# foreign subtype: tcmud must neither open it nor answer for it
truncate -s 16M /tmp/foreign.img
lines=$(wc -l < "$TCMUD_LOG")
bg_wait 30 tcmu_create user_1 foreign 16777216 qcow//tmp/foreign.img nl_reply_supported=-1 >/dev/null ||
    { unstick_netlink; fail "creating the foreign device"; }
# tcmud has decided about the device once it logs the event as foreign
wait_log "$lines" 'foreign device' || { diag; fail "tcmud never logged the ADDED_DEVICE of the foreign device"; }
holds_uio "$TCMUD_PID" foreign && fail "tcmud opened the foreign device's uio"
dmesg_new | grep -iE 'could not find device|Mismatched commands' && fail "kernel got an unexpected netlink reply"
verified "foreign qcow// device: not opened by tcmud, no stray netlink reply (dmesg clean)"
log_has 'foreign|ignor|not ours|qcow' && verified "tcmud log mentions it: $(log_grep 'foreign|ignor|not ours|qcow' | head -n1 | cut -c1-140)"
bg_wait 30 rmdir "$A/foreign" || { unstick_netlink; fail "removing the foreign device"; }

# removal with replies: unlink + rmdir must complete
lun_remove user_1 r0 0 || { diag; fail "removal did not complete (no REMOVED_DEVICE_DONE?)"; }
[ -e "$A/r0" ] && fail "backstore still there"
verified "LUN unlink + backstore rmdir completed (REMOVED_DEVICE_DONE)"
wait_released "$TCMUD_PID" r0 || fail "tcmud still holds the removed device 30 s after its removal"
tcmud_alive || { diag; fail "tcmud died"; }
[ -z "$(ring_errors)" ] || { ring_errors; fail "kernel logged TCMU ring errors"; }
tcmud_stop
verified "part A done, tcmud stopped cleanly (status $TCMUD_RC)"

# ---------------------------------------------------------------- part B
tcmud_write_config netlink_replies=false p1:256MiB:64KiB
tcmud_start
tcmu-runner > /tmp/runner.out 2>&1 &
RPID=$!
runner_ready $RPID || { cat /tmp/runner.out; fail "tcmu-runner exited or never joined the TCM-USER netlink group"; }
truncate -s 32M /tmp/runner.img
SDT=$(lun_create user_1 mine $((32 * MB)) thin/p1/mine 0 nl_reply_supported=-1) || { diag; fail "tcmud LUN beside tcmu-runner"; }
SDR=$(lun_create user_1 theirs $((32 * MB)) qcow//tmp/runner.img 1 nl_reply_supported=-1) || { diag; cat /var/log/tcmu-runner.log; fail "tcmu-runner LUN beside tcmud"; }
holds_uio "$TCMUD_PID" mine || fail "tcmud does not serve thin/p1/mine"
holds_uio "$RPID" theirs || fail "tcmu-runner does not serve qcow//tmp/runner.img"
holds_uio "$TCMUD_PID" theirs && fail "tcmud opened tcmu-runner's device"
verified "tcmud serves thin/p1/mine ($SDT), tcmu-runner serves qcow//tmp/runner.img ($SDR)"
make_pattern /tmp/p1 16; make_pattern /tmp/p2 16
dd if=/tmp/p1 of="$SDT" bs=1M oflag=direct conv=fsync 2>/dev/null &
w1=$!
dd if=/tmp/p2 of="$SDR" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "dd to the tcmu-runner LUN"
wait $w1 || fail "dd to the tcmud LUN"
[ "$(dd if="$SDT" bs=1M count=16 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/p1)" ] || fail "tcmud LUN readback"
[ "$(dd if="$SDR" bs=1M count=16 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/p2)" ] || fail "tcmu-runner LUN readback"
[ "$(dd if=/tmp/runner.img bs=1M count=16 2>/dev/null | sha)" = "$(sha /tmp/p2)" ] || fail "tcmu-runner image content"
verified "both LUNs pass a concurrent 16 MiB dd write + readback"
# tcmud restarted while tcmu-runner serves a device (module_params = "auto"): the module-wide
# block_netlink/reset_netlink and the reply flag are left alone, both LUNs keep working
lines=$(wc -l < "$TCMUD_LOG")
tcmud_restart mine
tail -n +$((lines + 1)) "$TCMUD_LOG" | grep -q "other TCMU daemons' devices exist" ||
    { diag; fail "tcmud restarted beside tcmu-runner's device did not leave the module parameters alone"; }
tail -n +$((lines + 1)) "$TCMUD_LOG" | grep -qiE 'netlink blocked|reply support|replies disabled' &&
    { diag; fail "tcmud changed module-wide netlink settings beside tcmu-runner"; }
dd if=/tmp/p2 of="$SDR" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "tcmu-runner LUN after the tcmud restart"
dd if=/tmp/p1 of="$SDT" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "tcmud LUN after its restart"
verified "tcmud restarted beside tcmu-runner's device: $(log_grep "other TCMU daemons" | tail -n1 | cut -c1-90)...; no netlink block/reset, reply flag untouched; both LUNs write"
lun_remove user_1 theirs 1 || fail "remove tcmu-runner LUN"
lun_remove user_1 mine 0 || fail "remove tcmud LUN"
tcmud_alive || { diag; fail "tcmud died"; }
kill $RPID; wait $RPID
tcmud_stop
verified "both removed; both daemons still up until stopped"
exit 0
