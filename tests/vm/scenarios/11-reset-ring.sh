#!/bin/sh
# 11-reset-ring.sh -- `echo 1 > action/reset_ring` from outside during fio writes with crc32c
#   verify, three times. tcmud is frozen (SIGSTOP) around the reset so that commands are
#   certainly in flight inside it and fio cannot end behind the test's back; the kernel fails
#   them with BUSY and resets cmd_head/cmd_tail to 0. After SIGCONT tcmud must notice (log
#   "ring reset from outside"), drop what the kernel failed and serve the ring from its start:
#   fio finishes and verifies, dmesg shows no broken ring, no I/O error.
# timeout: 420
. /vmlab/tcmud-lib.sh

MB=1048576
tcmud_write_config p1:512MiB:64KiB
tcmud_start
SD=$(lun_create user_1 rr $((128 * MB)) thin/p1/rr 0) || { diag; fail "LUN"; }
D=$CFG/core/user_1/rr
[ -w "$D/action/reset_ring" ] || fail "no action/reset_ring on this kernel"
verified "thin/p1/rr served as $SD"
dmesg_mark

r=1
while [ $r -le 3 ]; do
    case $((r % 2)) in 1) rw=randwrite bs=4k sz=32M;; 0) rw=write bs=256k sz=96M;; esac
    fio --name=rr$r --filename="$SD" --direct=1 --ioengine=libaio --iodepth=32 --rw="$rw" \
        --bs="$bs" --size="$sz" --verify=crc32c --verify_fatal=1 --do_verify=1 \
        --randseed=$r --output-format=terse --terse-version=3 > /tmp/fio-rr$r.out 2>&1 &
    FPID=$!
    wait_writes "$SD" 32 120 $FPID || { cat /tmp/fio-rr$r.out; fail "round $r: fio wrote nothing or ended within its first 32 writes"; }
    lines=$(wc -l < "$TCMUD_LOG")
    tcmud_freeze
    kill -0 $FPID 2>/dev/null || { cat /tmp/fio-rr$r.out; fail "round $r: fio ended before the reset"; }
    echo 1 > "$D/action/reset_ring" || { kill -CONT "$TCMUD_PID"; fail "round $r: reset_ring write failed"; }
    kill -CONT "$TCMUD_PID"
    wait_log "$lines" 'ring reset from outside' 60 || { diag; fail "round $r: tcmud never noticed the reset"; }
    if ! wait $FPID; then cat /tmp/fio-rr$r.out; diag; fail "round $r: fio failed after the ring reset"; fi
    verified "round $r: reset_ring during fio $rw bs=$bs; $(log_grep 'ring reset from outside' | tail -n1 | sed 's/.*dropped=/dropped=/' | cut -c1-60); fio verify of $sz passed ($(fio_summary rr$r))"
    r=$((r + 1))
done
tcmud_alive || { diag; fail "tcmud died"; }
errs=$(dmesg_new | grep -iE 'ring broken|ring is broken|I/O error|critical|Invalid addr|Mismatched')
[ -z "$errs" ] || { echo "$errs"; diag; fail "kernel logged ring or I/O errors"; }
verified "dmesg: no broken ring, no I/O errors over 3 outside ring resets"
lun_remove user_1 rr 0 || { diag; fail "LUN removal"; }
tcmud_stop
[ "$TCMUD_RC" = 0 ] || fail "tcmud exit status $TCMUD_RC"
verified "LUN removed, tcmud stopped cleanly"
