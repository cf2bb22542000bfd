#!/bin/sh
# 00-harness-runner.sh -- proves the harness itself, independent of tcmud: Debian's
# tcmu-runner 1.5.4 serves a `qcow//` (raw image) LUN through tcm_loop; dd and fio verify.
# timeout: 180
# needs: tcmu-runner-only (no tcmud binary)
. /vmlab/tcmud-lib.sh

truncate -s 64M /tmp/img
tcmu-runner > /tmp/runner.out 2>&1 &
RPID=$!
sleep 1
kill -0 $RPID || { cat /tmp/runner.out; fail "tcmu-runner exited"; }

BS=$(tcmu_create user_1 dev0 $((64 << 20)) "qcow//tmp/img" hw_max_sectors=1024) || fail tcmu_create
SD=$(loop_attach "$BS" 0 60) || { diag; fail "loop_attach"; }
verified "tcm_loop LUN served by tcmu-runner: $SD ($(cat /sys/block/${SD#/dev/}/size) sectors)"
sg_inq "$SD" | grep -q 'Vendor identification: LIO-ORG' || fail "sg_inq vendor"
verified "sg_inq: vendor LIO-ORG (answered by tcmu-runner)"

make_pattern /tmp/pat 16
dd if=/tmp/pat of="$SD" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "dd write"
[ "$(dd if="$SD" bs=1M count=16 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "dd readback"
[ "$(dd if=/tmp/img bs=1M count=16 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "backing file"
verified "dd 16 MiB O_DIRECT write/read back identical (device and backing image)"

fio_run rw4k "$SD" randwrite 4k 16M
verified "fio 4k randwrite 16 MiB qd32 crc32c verify: $(fio_summary rw4k)"

loop_detach 0 && loop_teardown && tcmu_remove user_1 dev0 || fail "teardown"
verified "teardown (LUN unlink, backstore rmdir)"
kill $RPID; wait $RPID
exit 0
