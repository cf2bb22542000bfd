#!/bin/sh
# 06-crash-restart.sh -- process crash: five times, kill -9 tcmud in the middle of fio writes
# (crc32c verify), start it again; the new process resets the ring (block_dev + reset_ring),
# the initiator retries, fio finishes and verifies every acknowledged block; dmesg shows no
# broken ring and the initiator no I/O error.
# timeout: 600
. /vmlab/tcmud-lib.sh

MB=1048576
ROUNDS=${1:-5}
CACHE=${2:-default}    # "wt": switch the LUN's write cache off first (MODE SELECT WCE=0)
tcmud_write_config p1:512MiB:64KiB
tcmud_start
SD=$(lun_create user_1 crash $((128 * MB)) thin/p1/crash 0) || { diag; fail "LUN"; }
verified "thin/p1/crash served as $SD"
if [ "$CACHE" = wt ]; then
    for c in "/sys/block/${SD#/dev/}"/device/scsi_disk/*/cache_type; do echo "write through" > "$c" || fail "cache_type"; done
    sg_modes -p 0x08 "$SD" | grep -A2 Caching
fi
vmsg "write cache: $(cat "/sys/block/${SD#/dev/}"/device/scsi_disk/*/cache_type)"
dmesg_mark

r=1
while [ $r -le "$ROUNDS" ]; do
    case $((r % 2)) in 1) rw=randwrite bs=4k sz=24M;; 0) rw=write bs=256k sz=96M;; esac
    fio --name=crash$r --filename="$SD" --direct=1 --ioengine=libaio --iodepth=32 --rw="$rw" \
        --bs="$bs" --size="$sz" --verify=crc32c --verify_fatal=1 --do_verify=1 \
        --randseed=$r --output-format=terse --terse-version=3 > /tmp/fio-crash$r.out 2>&1 &
    FPID=$!
    # let writes get going, freeze tcmud where it is (commands in flight, fio cannot finish
    # behind our back however fast the machine is), then kill -9 it
    wait_writes "$SD" 32 120 $FPID || { cat /tmp/fio-crash$r.out; fail "round $r: fio wrote nothing or ended within its first 32 writes"; }
    tcmud_freeze
    kill -0 $FPID 2>/dev/null || { cat /tmp/fio-crash$r.out; fail "round $r: fio ended before the kill"; }
    old=$TCMUD_PID
    tcmud_kill9
    vmsg "round $r: killed tcmud pid $old during fio $rw bs=$bs"
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
log_has 'reset_ring' || { diag; fail "the daemon log shows no ring reset on restart"; }
verified "tcmud log shows the recovery: $(log_grep 'reset_ring' | tail -n1 | cut -c1-140)"
tcmud_stop
lun_remove user_1 crash 0 || fail "LUN removal"
exit 0
