#!/bin/sh
# 12-recovery-replay.sh -- `recovery = "replay"` on the real kernel's rings, which offer
#   out-of-order completion (CAP_OOOC): a device adopted at start is refused with an error
#   naming the setting (replaying would re-execute completed commands and break the ring),
#   not served; the daemon itself keeps running. Started again with `reset`, the device is
#   served and reads back what was written before.
# timeout: 240
. /vmlab/tcmud-lib.sh

MB=1048576
tcmud_write_config p1:256MiB:64KiB
tcmud_start
SD=$(lun_create user_1 rep $((64 * MB)) thin/p1/rep 0) || { diag; fail "LUN"; }
make_pattern /tmp/pat 4
dd if=/tmp/pat of="$SD" bs=1M oflag=direct 2>/dev/null || fail "write the pattern"
want=$(sha /tmp/pat)
verified "thin/p1/rep served as $SD, 4 MiB pattern written"
tcmud_stop
dmesg_mark

lines=$(wc -l < "$TCMUD_LOG")
tcmud_start --recovery replay
tail -n +"$lines" "$TCMUD_LOG" | grep -q 'refused: the ring offers out-of-order completion' ||
    { diag; fail "no refusal of replay in the log"; }
holds_uio "$TCMUD_PID" rep && { diag; fail "the ring was adopted under replay"; }
tcmud_alive || fail "tcmud died after refusing the device"
verified "replay refused: $(log_grep 'refused: the ring offers' | tail -n1 | cut -c1-160)"
tcmud_stop

tcmud_start
wait_served rep
got=$(dd if="$SD" bs=1M count=4 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "pattern read back differs after the reset restart"
verified "restarted with reset: served, 4 MiB pattern reads back intact"
errs=$(dmesg_new | grep -iE 'ring broken|tcmu: |I/O error')
[ -z "$errs" ] || { echo "$errs"; fail "kernel logged ring or I/O errors"; }
verified "dmesg: no ring or I/O errors"
tcmud_stop
lun_remove user_1 rep 0 || fail "LUN removal"
exit 0
