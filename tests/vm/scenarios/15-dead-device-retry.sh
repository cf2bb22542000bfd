#!/bin/sh
# 15-dead-device-retry.sh -- a device whose restart budget ran out is closed and re-opened:
#   a fault-injection build; seven panics in the device actor's timer (TCMUD_FAULT_FILE)
#   exhaust its restart budget (5 in 60 s): the device fails for good. The supervisor closes it
#   and re-opens it after its back-off (retry 1, as an adoption: the ring is reset). The LUN
#   then reads back what was written before and takes new writes, in the same process; the
#   log shows the failure and the retry.
# timeout: 300
# needs: tcmud-fault (tcmud built with --features fault-injection, as /vmlab/bin/tcmud-fault)
. /vmlab/tcmud-lib.sh

# shellcheck disable=SC2034 # read by tcmud-lib.sh
TCMUD=/vmlab/bin/tcmud-fault
MB=1048576
tcmud_write_config p1:256MiB:64KiB
export TCMUD_FAULT_FILE=/tmp/fault15
tcmud_start
unset TCMUD_FAULT_FILE
PID0=$TCMUD_PID
SD=$(lun_create user_1 dead $((32 * MB)) thin/p1/dead 0) || { diag; fail "LUN"; }
make_pattern /tmp/pat 4
dd if=/tmp/pat of="$SD" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "dd write"
verified "thin/p1/dead served as $SD by a fault-injection build; 4 MiB written"

lines=$(wc -l < "$TCMUD_LOG")
echo "timer@0,timer@0,timer@0,timer@0,timer@0,timer@0,timer@0" > /tmp/fault15
wait_log "$lines" 'restart budget exhausted' 90 || { diag; fail "the device never used up its restart budget"; }
verified "device failed: $(log_grep 'restart budget exhausted' | tail -n1 | grep -o 'restart budget exhausted[^;]*' | cut -c1-80)"
wait_log "$lines" 'failed for good; device closed, re-opened after the delay' 30 ||
    { diag; fail "the failed device was not closed for a retry"; }
wait_log "$lines" 'retrying a dead device' 30 || { diag; fail "the failed device was never retried"; }
n=100
until tail -n +$((lines + 1)) "$TCMUD_LOG" | grep 'retrying a dead device' -A 200 | grep -q 'device served'; do
    [ $n -le 0 ] && { diag; fail "the retried device was not served again"; }
    sleep 0.1; n=$((n - 1))
done
verified "$(log_grep 'failed for good; device closed' | tail -n1 | cut -c1-150)"
verified "$(log_grep 'retrying a dead device' | tail -n1 | cut -c1-150)"
holds_uio "$TCMUD_PID" dead || { diag; fail "tcmud does not hold the device after the retry"; }
[ "$(dd if="$SD" bs=1M count=4 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] ||
    { diag; fail "data written before the failure does not read back after the retry"; }
make_pattern /tmp/pat2 4
dd if=/tmp/pat2 of="$SD" bs=1M seek=8 oflag=direct conv=fsync 2>/dev/null || { diag; fail "write after the retry"; }
[ "$(dd if="$SD" bs=1M skip=8 count=4 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat2)" ] || fail "readback after the retry"
[ "$TCMUD_PID" = "$PID0" ] && tcmud_alive || fail "tcmud process changed or died"
verified "after the retry (same pid $PID0): old data reads back, new data writes and reads back"
lun_remove user_1 dead 0 || { diag; fail "removal did not complete"; }
tcmud_stop
exit 0
