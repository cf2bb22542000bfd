#!/bin/sh
# 10-forged-netlink.sh -- a process with CAP_NET_ADMIN multicasts forged TCM-USER events
#   (tools: the nl_forge example) to the `config` group: an ADDED_DEVICE that points a live
#   minor at file//tmp/forged.img, then a REMOVED_DEVICE for it. tcmud must ignore both (the
#   sender's port id is not the kernel's): the LUN keeps serving its real backstore (its data
#   reads back), the forged image is never opened, the uio stays held.
# timeout: 240
. /vmlab/tcmud-lib.sh

MB=1048576
FORGE=/vmlab/bin/nl_forge
[ -x "$FORGE" ] || fail "no nl_forge tool at $FORGE (built by run-scenarios.sh)"
tcmud_write_config p1:256MiB:64KiB
tcmud_start
SD=$(lun_create user_1 r0 $((32 * MB)) thin/p1/r0 0) || { diag; fail "LUN create"; }
make_pattern /tmp/pat 8
dd if=/tmp/pat of="$SD" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "dd write"
U=$(tcmu_uio r0) || fail "no uio for r0"
MINOR=${U#uio}
truncate -s 32M /tmp/forged.img
verified "LUN $SD served by tcmud from thin/p1/r0 ($U), 8 MiB pattern written"

lines=$(wc -l < "$TCMUD_LOG")
"$FORGE" added "$MINOR" "tcm-user/1/r0/file//tmp/forged.img" 7 > /tmp/forge.out 2>&1
frc=$?
cat /tmp/forge.out
if [ $frc = 3 ]; then
    verified "the kernel refused the userspace multicast itself: $(tail -n1 /tmp/forge.out)"
else
    [ $frc = 0 ] || fail "nl_forge failed (status $frc)"
    wait_log "$lines" 'not from the kernel' ||
        { diag; fail "tcmud never logged the forged datagram as not from the kernel"; }
    verified "forged ADDED reached tcmud and was dropped: $(log_grep 'not from the kernel' | tail -n1 | cut -c1-160)"
fi
lines=$(wc -l < "$TCMUD_LOG")
"$FORGE" removed "$MINOR" "tcm-user/1/r0/thin/p1/r0" 7 > /tmp/forge.out 2>&1
frc=$?
cat /tmp/forge.out
if [ $frc = 0 ]; then
    wait_log "$lines" 'not from the kernel' ||
        { diag; fail "tcmud never logged the forged REMOVED as not from the kernel"; }
    verified "forged REMOVED reached tcmud and was dropped"
fi

for _fd in /proc/"$TCMUD_PID"/fd/*; do
    [ "$(readlink "$_fd" 2>/dev/null)" = /tmp/forged.img ] && fail "tcmud opened the forged backstore"
done
holds_uio "$TCMUD_PID" r0 || { diag; fail "tcmud no longer holds $U"; }
log_has 'device served.*forged|stale device|re-opening|device removed' &&
    { log_grep 'device served.*forged|stale device|re-opening|device removed'; fail "tcmud acted on a forged event"; }
[ "$(dd if="$SD" bs=1M count=8 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] ||
    { diag; fail "LUN data changed after the forged events"; }
dd if=/tmp/pat of="$SD" bs=1M seek=8 oflag=direct conv=fsync 2>/dev/null || fail "write after the forged events"
verified "after the forged events: forged image never opened, $U still held, data reads back, writes work"

tcmud_alive || { diag; fail "tcmud died"; }
[ -z "$(ring_errors)" ] || { ring_errors; fail "kernel logged TCMU ring errors"; }
lun_remove user_1 r0 0 || { diag; fail "LUN removal"; }
tcmud_stop
[ "$TCMUD_RC" = 0 ] || fail "tcmud exit status $TCMUD_RC"
verified "LUN removed, tcmud stopped cleanly"
