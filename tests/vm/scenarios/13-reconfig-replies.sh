#!/bin/sh
# 13-reconfig-replies.sh -- RECONFIG replies carry the real result (netlink_replies = true):
#   - a file// LUN grows through attrib/dev_size: the write completes once the image file has
#     the new length, and the initiator sees the new capacity after a rescan;
#   - a shrink is refused: the dev_size write fails (EINVAL), dev_size, the image's length and
#     the data stay;
#   - a dev_config change to a backstore that cannot be opened (a pool not configured) is
#     refused: the write fails, the old image stays served (uio held, data reads back, tcmud
#     logs that the old one stays);
#   - a dev_config change to another image opens it before closing the old device: the write
#     completes and the LUN then reads and writes the new image.
# timeout: 300
. /vmlab/tcmud-lib.sh

MB=1048576
A=$CFG/core/user_1
tcmud_write_config netlink_replies=true p1:256MiB:64KiB
dmesg_mark
tcmud_start
SD=$(lun_create user_1 r13 $((32 * MB)) file//tmp/r13.img 0 nl_reply_supported=1) ||
    { diag; fail "enable of file//tmp/r13.img did not complete"; }
[ "$(stat -c %s /tmp/r13.img)" = $((32 * MB)) ] || fail "image is $(stat -c %s /tmp/r13.img) bytes, want 32 MiB"
make_pattern /tmp/pat 8
dd if=/tmp/pat of="$SD" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "dd write"
verified "file//tmp/r13.img served as $SD (32 MiB image)"

# grow 32 -> 48 MiB: answered once the image has grown
bg_wait 30 sh -c "echo $((48 * MB)) > $A/r13/attrib/dev_size" ||
    { rc=$?; diag; [ $rc = 124 ] && unstick_netlink; fail "growing dev_size failed (status $rc)"; }
len=$(stat -c %s /tmp/r13.img)
[ "$len" = $((48 * MB)) ] || { diag; fail "dev_size write completed but the image has $len bytes, want $((48 * MB))"; }
verified "grow via attrib/dev_size completed after the image grew to $len bytes"
echo 1 > "/sys/block/${SD#/dev/}/device/rescan"
n=100
until [ "$(cat "/sys/block/${SD#/dev/}/size")" = $((48 * MB / 512)) ] || [ $n -le 0 ]; do sleep 0.1; n=$((n - 1)); done
sectors=$(cat "/sys/block/${SD#/dev/}/size")
[ "$sectors" = $((48 * MB / 512)) ] || { sg_readcap "$SD"; diag; fail "after rescan the initiator sees $sectors sectors"; }
dd if=/tmp/pat of="$SD" bs=1M seek=40 oflag=direct conv=fsync 2>/dev/null || fail "write in the grown range"
[ "$(dd if=/tmp/r13.img bs=1M skip=40 count=8 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "grown range not in the image"
verified "initiator sees $sectors sectors; the grown range lands in the image"

# shrink 48 -> 16 MiB: refused
lines=$(wc -l < "$TCMUD_LOG")
bg_wait 30 sh -c "echo $((16 * MB)) > $A/r13/attrib/dev_size" 2>/tmp/shrink.err
rc=$?
[ $rc = 124 ] && { diag; unstick_netlink; fail "shrink: dev_size write hung"; }
[ $rc != 0 ] || { diag; fail "shrink to 16 MiB was accepted (the reply claimed success)"; }
[ "$(cat $A/r13/attrib/dev_size)" = $((48 * MB)) ] || fail "dev_size is $(cat $A/r13/attrib/dev_size) after a refused shrink"
[ "$(stat -c %s /tmp/r13.img)" = $((48 * MB)) ] || fail "image length changed by a refused shrink"
wait_log "$lines" 'resize refused' || { diag; fail "tcmud did not log the refused resize"; }
verified "shrink refused: write failed ($(tr -d '\n' < /tmp/shrink.err | cut -c1-80)), dev_size and image stay 48 MiB; log: $(log_grep 'resize refused' | tail -n1 | cut -c1-120)"

# dev_config change to a backstore that cannot open: refused, old stays served
lines=$(wc -l < "$TCMUD_LOG")
bg_wait 30 sh -c "echo -n thin/nopool/v > $A/r13/attrib/dev_config" 2>/dev/null
rc=$?
[ $rc = 124 ] && { diag; unstick_netlink; fail "dev_config write hung"; }
[ $rc != 0 ] || { diag; fail "dev_config change to an unknown pool was accepted"; }
wait_log "$lines" 'old one stays served' || { diag; fail "tcmud did not log keeping the old backstore"; }
holds_uio "$TCMUD_PID" r13 || { diag; fail "tcmud no longer serves r13 after a refused dev_config change"; }
[ "$(dd if="$SD" bs=1M count=8 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "old data after a refused dev_config change"
dd if=/tmp/pat of="$SD" bs=1M seek=8 oflag=direct conv=fsync 2>/dev/null || fail "write after a refused dev_config change"
[ "$(dd if=/tmp/r13.img bs=1M skip=8 count=8 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "old image no longer written"
verified "dev_config change to thin/nopool/v refused (status $rc); the old image is still served (read + write)"

# dev_config change to another image: completes, the LUN serves the new one
lines=$(wc -l < "$TCMUD_LOG")
bg_wait 30 sh -c "echo -n file//tmp/r13b.img > $A/r13/attrib/dev_config" ||
    { rc=$?; diag; [ $rc = 124 ] && unstick_netlink; fail "dev_config change to file//tmp/r13b.img failed (status $rc)"; }
wait_log "$lines" 'device served' || { diag; fail "no 'device served' after the dev_config change"; }
make_pattern /tmp/pat2 4
dd if=/tmp/pat2 of="$SD" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "write after the dev_config change"
[ "$(dd if=/tmp/r13b.img bs=1M count=4 2>/dev/null | sha)" = "$(sha /tmp/pat2)" ] || fail "new image does not hold the write"
[ "$(dd if=/tmp/r13.img bs=1M count=8 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "old image changed after the switch"
verified "dev_config change to file//tmp/r13b.img completed; writes land in the new image, the old one is untouched"

lun_remove user_1 r13 0 || { diag; fail "removal did not complete"; }
tcmud_alive || { diag; fail "tcmud died"; }
# The two refusals make the kernel log "Unable to reconfigure device": expected, nothing else.
n=$(dmesg_new | grep -c 'Unable to reconfigure')
[ "$n" -ge 2 ] || { dmesg_new | tail -n 20; fail "kernel logged $n refused reconfigurations, want 2"; }
errs=$(ring_errors | grep -v 'Unable to reconfigure')
[ -z "$errs" ] || { echo "$errs"; fail "kernel logged TCMU ring errors"; }
verified "kernel logged the two refused reconfigurations ('Unable to reconfigure device'), no ring error"
tcmud_stop
exit 0
