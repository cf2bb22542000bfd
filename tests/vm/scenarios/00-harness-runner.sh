#!/bin/sh
# 00-harness-runner.sh -- proves the harness itself, independent of tcmud: Debian's
# tcmu-runner 1.5.4 serves `qcow//` (raw image) LUNs through tcm_loop, created and removed
# with the same helpers the tcmud scenarios use (one with netlink replies);
# dd and fio verify; mkfs.ext4/e2fsck, blkdiscard and sg3-utils are present and work.
# timeout: 240
# needs: tcmu-runner-only (no tcmud binary)
. /vmlab/tcmud-lib.sh

MB=1048576
truncate -s 64M /tmp/img
dmesg_mark
truncate -s 16M /tmp/img2      # tcmu-runner's raw fallback wants image size == dev_size
tcmu-runner > /tmp/runner.out 2>&1 &
RPID=$!
runner_ready $RPID || { cat /tmp/runner.out; fail "tcmu-runner exited or never joined the TCM-USER netlink group"; }

SD=$(lun_create user_1 dev0 $((64 * MB)) qcow//tmp/img 0) || { diag; fail "lun_create"; }
holds_uio $RPID dev0 || fail "tcmu-runner does not hold dev0's uio"
verified "tcm_loop LUN 0 served by tcmu-runner: $SD ($(cat "/sys/block/${SD#/dev/}/size") sectors)"
sg_inq "$SD" | grep -q 'Vendor identification: LIO-ORG' || fail "sg_inq vendor"
verified "sg_inq: vendor LIO-ORG (answered by tcmu-runner)"

make_pattern /tmp/pat 16
dd if=/tmp/pat of="$SD" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "dd write"
[ "$(dd if="$SD" bs=1M count=16 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "dd readback"
[ "$(dd if=/tmp/img bs=1M count=16 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "backing file"
verified "dd 16 MiB O_DIRECT write/read back identical (device and backing image)"

fio_run rw4k "$SD" randwrite 4k 16M
verified "fio 4k randwrite 16 MiB qd32 crc32c verify: $(fio_summary rw4k)"

mkfs.ext4 -q -F -E nodiscard "$SD" || fail "mkfs.ext4"
e2fsck -f -n "$SD" > /dev/null 2>&1 || fail "e2fsck"
mkdir -p /mnt/t && mount -t ext4 "$SD" /mnt/t && cp /tmp/pat /mnt/t/ && umount /mnt/t || fail "ext4 mount/write"
verified "mkfs.ext4, e2fsck -f, ext4 mount/write/umount work in the guest"

# netlink replies (tcmu-runner sends SET_FEATURES): create and remove wait for its replies
dmesg_new | grep -q 'command reply support 1' && verified "kernel: $(dmesg_new | grep -o 'tcmu daemon: command reply support 1' | head -n1)"
SD1=$(lun_create user_1 dev1 $((16 * MB)) qcow//tmp/img2 1 nl_reply_supported=1) || { diag; fail "lun_create with replies"; }
[ "$(cat "$CFG/core/user_1/dev1/attrib/nl_reply_supported")" = 1 ] || fail "nl_reply_supported"
dd if=/tmp/pat of="$SD1" bs=1M count=4 oflag=direct 2>/dev/null || fail "dd to LUN 1"
verified "nl_reply_supported=1 LUN $SD1 created (ADDED_DEVICE_DONE from tcmu-runner) and written"

lun_remove user_1 dev1 1 && lun_remove user_1 dev0 0 && loop_teardown || fail "teardown"
[ -z "$(ring_errors)" ] || { ring_errors; fail "ring errors"; }
verified "teardown (LUN unlink, backstore rmdir with and without replies); no ring errors"
kill $RPID; wait $RPID
exit 0
