#!/bin/sh
# 06-crash-restart.sh -- process crash: five times, kill -9 tcmud in the middle of fio writes
# (crc32c verify), start it again; the new process resets the ring (block_dev + reset_ring),
# the initiator retries, fio finishes and verifies every acknowledged block; dmesg shows no
# broken ring and the initiator no I/O error.
# timeout: 600
. /vmlab/tcmud-lib.sh

MB=1048576
ROUNDS=${1:-5}
tcmud_write_config p1:512MiB:64KiB
tcmud_start
SD=$(lun_create user_1 crash $((128 * MB)) thin/p1/crash 0) || { diag; fail "LUN"; }
verified "thin/p1/crash served as $SD"
dmesg_mark

r=1
while [ $r -le "$ROUNDS" ]; do
    case $((r % 2)) in 1) rw=randwrite bs=4k sz=24M;; 0) rw=write bs=256k sz=96M;; esac
    fio --name=crash$r --filename="$SD" --direct=1 --ioengine=libaio --iodepth=32 --rw=$rw \
        --bs=$bs --size=$sz --verify=crc32c --verify_fatal=1 --do_verify=1 \
        --randseed=$r --output-format=terse --terse-version=3 > /tmp/fio-crash$r.out 2>&1 &
    FPID=$!
    # let writes get going, then kill -9 in the middle of them
    sleep 3
    kill -0 $FPID 2>/dev/null || { cat /tmp/fio-crash$r.out; fail "round $r: fio ended before the kill (too fast?)"; }
    old=$TCMUD_PID
    tcmud_kill9
    vmsg "round $r: killed tcmud pid $old during fio $rw bs=$bs"
    sleep 1
    tcmud_start
    wait_served crash
    if ! wait $FPID; then cat /tmp/fio-crash$r.out; diag; fail "round $r: fio failed after the restart"; fi
    verified "round $r: kill -9 during fio $rw bs=$bs; restarted; fio verify of $sz passed ($(fio_summary crash$r))"
    r=$((r + 1))
done
dmesg_new | grep -iE 'ring broken|tcmu' | head
errs=$(dmesg_new | grep -iE 'ring broken|tcmu: |I/O error|critical' )
[ -z "$errs" ] || { echo "$errs"; fail "kernel logged ring or I/O errors"; }
verified "dmesg: no 'ring broken', no 'tcmu: ' errors, no I/O errors over $ROUNDS crashes"
log_has 'reset|recover|adopt' && verified "tcmud log shows the recovery: $(grep -iE 'reset|recover|adopt' "$TCMUD_LOG" | tail -n1 | cut -c1-160)"
tcmud_stop
lun_remove user_1 crash 0 || fail "LUN removal"
exit 0
