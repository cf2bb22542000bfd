#!/bin/sh
# 17-rbd.sh -- tcmud serves a Ceph RBD image over tcm_loop: a single-node cluster on the
# guest's loopback (guest/ceph-lib.sh: mon + memstore OSD, pool `rbd` of size 1), image
# rbd/vol, backstore dev_config rbd/rbd/vol. dd pattern write + read back, and the same bytes
# read from the image through librbd (`rbd export`); fio 4k randwrite with crc32c verify; then
# three times: kill -9 tcmud in the middle of fio writes with verify (after fio's writes are
# seen completing on the disk, tcmud frozen so commands are in flight), start it again: it
# re-opens the image (taking over the exclusive lock the killed process held), fio finishes
# and verifies every block; no ring or I/O errors in dmesg. Finally the LUN's content read by
# the initiator equals the image's read by librbd after tcmud stopped. Between them the image
# is grown to 96 MiB through the control socket (`tcmud volume resize rbd:rbd vol`).
# timeout: 1200
# needs: rbd (tcmud built with --features rbd as /vmlab/bin/tcmud-rbd; the ceph segment)
. /vmlab/tcmud-lib.sh
. /vmlab/ceph-lib.sh

# shellcheck disable=SC2034 # read by tcmud-lib.sh
TCMUD=/vmlab/bin/tcmud-rbd
MB=1048576
ROUNDS=${1:-3}
SIZE_MB=64

ceph_start
ceph_pool rbd
ceph_image rbd/vol $SIZE_MB
verified "single-node cluster on 127.0.0.1 (mon + memstore OSD), pool rbd, image rbd/vol ${SIZE_MB} MiB"

tcmud_write_config
tcmud_start
SD=$(lun_create user_1 rbdvol $((SIZE_MB * MB)) rbd/rbd/vol 0) || { diag; ceph_diag; fail "LUN on rbd/rbd/vol"; }
holds_uio "$TCMUD_PID" rbdvol || fail "tcmud does not hold rbdvol's uio"
[ "$(cat "/sys/block/${SD#/dev/}/size")" = $((SIZE_MB * 2048)) ] || fail "capacity $(cat "/sys/block/${SD#/dev/}/size") sectors"
verified "rbd/rbd/vol served by tcmud as $SD, $SIZE_MB MiB"
dmesg_mark

make_pattern /tmp/pat 8
dd if=/tmp/pat of="$SD" bs=1M seek=8 oflag=direct conv=fsync 2>/dev/null || { diag; fail "dd write"; }
[ "$(dd if="$SD" bs=1M skip=8 count=8 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "dd readback"
# the flushed bytes are in the cluster: read them through librbd, beside the serving daemon
timeout 120 rbd export rbd/vol /tmp/export.img > /dev/null 2>&1 || { ceph_diag; fail "rbd export"; }
[ "$(dd if=/tmp/export.img bs=1M skip=8 count=8 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "rbd export differs from what was written"
rm -f /tmp/export.img
verified "dd 8 MiB O_DIRECT + fsync: read back identical from $SD and from the image (rbd export)"

fio_run rbd4k "$SD" randwrite 4k 4M --randseed=11
verified "fio 4k randwrite 4 MiB qd32 crc32c verify: $(fio_summary rbd4k)"

r=1
while [ $r -le "$ROUNDS" ]; do
    case $((r % 2)) in 1) rw=randwrite bs=4k sz=2M;; 0) rw=write bs=256k sz=8M;; esac
    fio --name=crash$r --filename="$SD" --direct=1 --ioengine=libaio --iodepth=32 --rw="$rw" \
        --bs="$bs" --size="$sz" --offset=$((24 * MB)) --verify=crc32c --verify_fatal=1 --do_verify=1 \
        --randseed=$r --output-format=terse --terse-version=3 > /tmp/fio-crash$r.out 2>&1 &
    FPID=$!
    # fio's writes are completing, then freeze tcmud where it is (commands in flight) and kill it
    wait_writes "$SD" 16 300 $FPID || { cat /tmp/fio-crash$r.out; fail "round $r: fio wrote nothing or ended within its first 16 writes"; }
    tcmud_freeze
    kill -0 $FPID 2>/dev/null || { cat /tmp/fio-crash$r.out; fail "round $r: fio ended before the kill"; }
    old=$TCMUD_PID
    tcmud_kill9
    tk=$(cut -d' ' -f1 /proc/uptime)
    vmsg "round $r: killed tcmud pid $old during fio $rw bs=$bs at ${tk}s"
    tcmud_start
    wait_served rbdvol
    if ! wait $FPID; then cat /tmp/fio-crash$r.out; diag; ceph_diag; fail "round $r: fio failed after the restart"; fi
    verified "round $r: kill -9 during fio $rw bs=$bs; restarted; fio verify of $sz passed $(awk -v a="$tk" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.0f", b-a}') s after the kill ($(fio_summary crash$r))"
    r=$((r + 1))
done
errs=$(dmesg_new | grep -iE 'ring broken|tcmu: |I/O error|critical')
[ -z "$errs" ] || { echo "$errs"; fail "kernel logged ring or I/O errors"; }
verified "dmesg: no 'ring broken', no 'tcmu: ' errors, no I/O errors over $ROUNDS crashes"

# live resize through the control socket: the served image grows through its LUN (configfs
# dev_size, the kernel's RECONFIG, rbd_resize); the initiator sees it after a rescan
sd=${SD#/dev/}
"$TCMUD" volume resize rbd:rbd vol --size 96MiB > /tmp/rs.out 2>&1 || { cat /tmp/rs.out; diag; fail "live resize of the served image"; }
grep -q "resized rbd/vol to 96 MiB" /tmp/rs.out || { cat /tmp/rs.out; fail "resize output"; }
echo 1 > "/sys/block/$sd/device/rescan"
n=100
until [ "$(cat "/sys/block/$sd/size")" = $((96 * 2048)) ]; do
    [ $n -le 0 ] && fail "$SD is $(cat "/sys/block/$sd/size") sectors after growing the image to 96 MiB"
    sleep 0.1; n=$((n - 1))
done
rbd info rbd/vol 2>/dev/null | grep -q "size 96 MiB" || { rbd info rbd/vol; fail "the image is not 96 MiB"; }
if "$TCMUD" volume resize rbd:rbd vol --size 32MiB > /tmp/rs2.out 2>&1; then fail "shrinking the served image succeeded"; fi
grep -q "cannot shrink" /tmp/rs2.out || { cat /tmp/rs2.out; fail "shrink refusal"; }
SIZE_MB=96
verified "tcmud volume resize rbd:rbd vol --size 96MiB: $(cat /tmp/rs.out | tr -d '\n'); $SD 96 MiB after a rescan, rbd info 96 MiB; shrinking refused"

dd if="$SD" of=/tmp/lun.img bs=1M iflag=direct 2>/dev/null || fail "reading the LUN"
tcmud_stop
[ "$TCMUD_RC" = 0 ] || fail "tcmud exited with status $TCMUD_RC after SIGTERM"
# librados shut down before the process exited (an exit racing it crashed once in CI)
grep -q "every rbd image closed" "$TCMUD_LOG" || { tail -n 30 "$TCMUD_LOG"; fail "tcmud exited without having closed its rbd images"; }
timeout 120 rbd export rbd/vol /tmp/export.img > /dev/null 2>&1 || { ceph_diag; fail "rbd export after stop"; }
[ "$(sha /tmp/lun.img)" = "$(sha /tmp/export.img)" ] || fail "the image differs from what the initiator read"
verified "after SIGTERM (status 0): the image read through librbd equals the LUN's $SIZE_MB MiB read by the initiator"
lun_remove user_1 rbdvol 0 || fail "LUN removal"
ceph_stop
exit 0
