#!/bin/sh
# 08-shutdown-removal.sh -- orderly shutdown and device removal:
#   SIGTERM during fio writes: tcmud drains, exits; started again it adopts the device and
#   fio finishes with verify and without any error at the initiator;
#   LUN unlink + backstore rmdir while idle and while fio is running: tcmud notices
#   REMOVED_DEVICE, closes the device (log line, uio released) and keeps serving others.
# timeout: 480
. /vmlab/tcmud-lib.sh

MB=1048576
tcmud_write_config p1:512MiB:64KiB
tcmud_start
SD0=$(lun_create user_1 keep $((64 * MB)) thin/p1/keep 0) || { diag; fail "LUN 0"; }
verified "thin/p1/keep served as $SD0"
dmesg_mark

# ---------------------------------------------------------------- SIGTERM during I/O
for rnd in 1 2; do
    fio --name=term$rnd --filename="$SD0" --direct=1 --ioengine=libaio --iodepth=32 --rw=randwrite \
        --bs=16k --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 --randseed=$rnd \
        --output-format=terse --terse-version=3 > /tmp/fio-term$rnd.out 2>&1 &
    FPID=$!
    # Once fio is under way, freeze tcmud: its commands stay in flight and fio cannot finish
    # behind our back (however fast the machine); SIGTERM lands on that in-flight work.
    wait_writes "$SD0" 64 120 $FPID || { cat /tmp/fio-term$rnd.out; fail "fio wrote nothing or ended within its first 64 writes"; }
    tcmud_freeze
    kill -0 $FPID 2>/dev/null || { cat /tmp/fio-term$rnd.out; fail "fio ended before SIGTERM"; }
    t0=$(now_cs)
    tcmud_stop 30
    vmsg "SIGTERM -> exit in $(( $(now_cs) - t0 ))0 ms, status $TCMUD_RC"
    [ "$TCMUD_RC" = 0 ] || { diag; fail "tcmud exit status $TCMUD_RC after SIGTERM"; }
    tcmud_start
    wait_served keep
    wait $FPID || { cat /tmp/fio-term$rnd.out; diag; fail "fio failed across SIGTERM + restart"; }
    verified "round $rnd: SIGTERM during fio randwrite (exit status 0), restart, fio verify passed ($(fio_summary term$rnd))"
done
# A restarted device reports POWER ON/RESET (unit attention 29/00, "Power-on or device reset
# occurred"): the initiator retries transparently, it is not an error.
errs=$(dmesg_new | grep -iE 'I/O error|critical|Sense Key|timing out|abort|offline')
[ -z "$errs" ] || { echo "$errs"; fail "the initiator saw errors across SIGTERM/restart"; }
[ -z "$(ring_errors)" ] || { ring_errors; fail "kernel logged TCMU ring errors"; }
verified "no I/O errors, aborts or ring errors in dmesg across the SIGTERM restarts ($(dmesg_new | grep -c 'Power-on or device reset') power-on unit attentions)"

# ---------------------------------------------------------------- removal while idle
SD1=$(lun_create user_1 idle $((32 * MB)) thin/p1/idle 1) || { diag; fail "LUN 1"; }
dd if=/dev/urandom of="$SD1" bs=1M count=4 oflag=direct 2>/dev/null || fail "dd to LUN 1"
lines=$(wc -l < "$TCMUD_LOG")
lun_remove user_1 idle 1 || { diag; fail "idle removal"; }
wait_released "$TCMUD_PID" idle || fail "tcmud still holds the removed device 30 s after its removal"
wait_log "$lines" 'device stopped' || { diag; fail "no \"device stopped\" log line 30 s after the idle removal"; }
tail -n +$((lines + 1)) "$TCMUD_LOG" | grep -iE 'remov|device stopped' | tr -d '\033' | sed 's/\[[0-9;]*m//g; s/^[0-9T:.-]*Z *//' > /tmp/rm-idle.txt
grep -qi 'remov' /tmp/rm-idle.txt && grep -qi 'device stopped' /tmp/rm-idle.txt ||
    { diag; fail "tcmud log has no line about the removal"; }
verified "idle LUN unlink + rmdir: REMOVED_DEVICE noticed, device closed: $(grep -i remov /tmp/rm-idle.txt | head -n1 | cut -c1-90) / $(grep -i 'device stopped' /tmp/rm-idle.txt | head -n1 | sed 's/.*device stopped/device stopped/' | cut -c1-110)"

# ---------------------------------------------------------------- removal while busy
SD2=$(lun_create user_1 busy $((64 * MB)) thin/p1/busy 2) || { diag; fail "LUN 2"; }
fio --name=busy --filename="$SD2" --direct=1 --ioengine=libaio --iodepth=32 --rw=randwrite \
    --bs=4k --size=48M --time_based --runtime=60 --output-format=terse --terse-version=3 > /tmp/fio-busy.out 2>&1 &
FPID=$!
wait_writes "$SD2" 64 120 $FPID || { cat /tmp/fio-busy.out; fail "busy fio wrote nothing or ended early"; }
lines=$(wc -l < "$TCMUD_LOG")
lun_remove user_1 busy 2 || { diag; fail "removal while busy hung or failed"; }
verified "LUN unlink + backstore rmdir during fio randwrite completed"
# fio sees the device disappear: it ends (with errors), it must not hang
n=300
while kill -0 $FPID 2>/dev/null; do
    [ $n -le 0 ] && { kill -9 $FPID; fail "fio still running 30 s after its LUN was removed"; }
    sleep 0.1; n=$((n - 1))
done
wait $FPID; vmsg "fio on the removed LUN exited with status $? (errors expected)"
wait_released "$TCMUD_PID" busy || fail "tcmud still holds the removed busy device 30 s after its removal"
wait_log "$lines" 'device stopped' || { diag; fail "no \"device stopped\" log line 30 s after the busy removal"; }
tail -n +$((lines + 1)) "$TCMUD_LOG" | grep -iE 'remov|device stopped' | tr -d '\033' | sed 's/\[[0-9;]*m//g; s/^[0-9T:.-]*Z *//' > /tmp/rm-busy.txt
grep -qi 'remov' /tmp/rm-busy.txt && grep -qi 'device stopped' /tmp/rm-busy.txt ||
    { diag; fail "tcmud log has no line about the busy removal"; }
verified "busy removal noticed and cleaned up: $(grep -i remov /tmp/rm-busy.txt | head -n1 | cut -c1-90) / $(grep -i 'device stopped' /tmp/rm-busy.txt | head -n1 | sed 's/.*device stopped/device stopped/' | cut -c1-110)"
tcmud_alive || { diag; fail "tcmud died"; }

# ---------------------------------------------------------------- the remaining LUN still works
make_pattern /tmp/pat 8
dd if=/tmp/pat of="$SD0" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "LUN 0 write"
[ "$(dd if="$SD0" bs=1M count=8 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "LUN 0 readback"
verified "daemon alive, remaining LUN still reads/writes correctly"
[ -z "$(ring_errors)" ] || { ring_errors; fail "kernel logged TCMU ring errors"; }
lun_remove user_1 keep 0 || fail "LUN 0 removal"
loop_teardown
tcmud_stop
[ "$TCMUD_RC" = 0 ] || fail "final SIGTERM exit status $TCMUD_RC"
verified "final SIGTERM with no devices: exit status 0"
exit 0
