#!/bin/sh
# 07-inprocess-restart.sh -- in-process restart: a tcmud built with the `fault-injection`
# cargo feature panics on purpose inside a device (TCMUD_FAULT: in the device actor before a
# reply, in an I/O thread after the SCSI emulation, in the actor's timer) in the middle of
# fio writes with crc32c verify. The daemon keeps running (same pid), the device actor is
# restarted from the in-flight table kept outside it, the LUN keeps serving, fio verify
# passes, dmesg shows no ring errors and the log shows the panics and the restarts.
# timeout: 420
# needs: tcmud-fault (tcmud built with --features fault-injection, as /vmlab/bin/tcmud-fault)
. /vmlab/tcmud-lib.sh

# shellcheck disable=SC2034 # read by tcmud-lib.sh
TCMUD=/vmlab/bin/tcmud-fault
MB=1048576
PLAN=${1:-reply@1500,emulate@4000,timer@6500,reply@9000}
tcmud_write_config p1:512MiB:64KiB
export TCMUD_FAULT="$PLAN"
tcmud_start
unset TCMUD_FAULT
PID0=$TCMUD_PID
SD=$(lun_create user_1 flaky $((128 * MB)) thin/p1/flaky 0) || { diag; fail "LUN"; }
verified "thin/p1/flaky served as $SD by a fault-injection build, TCMUD_FAULT=$PLAN"
dmesg_mark

fio_run inj4k "$SD" randwrite 4k 24M --randseed=7
verified "fio 4k randwrite 24 MiB qd32 crc32c verify passed through the injected panics ($(fio_summary inj4k))"
fio_run inj64k "$SD" write 64k 48M --offset=32M
verified "fio 64k seq write 48 MiB qd32 crc32c verify passed ($(fio_summary inj64k))"

[ "$TCMUD_PID" = "$PID0" ] && tcmud_alive || fail "tcmud process changed or died"
verified "the daemon process stayed up (pid $PID0)"
panics=$(grep -ciE 'panic' "$TCMUD_LOG")
restarts=$(grep -ciE 'device actor restarted' "$TCMUD_LOG")
log_grep 'panic|restarted' | head -n 8 | cut -c1-200
[ "$panics" -ge 3 ] || { diag; fail "expected >= 3 injected panics in the log, found $panics"; }
[ "$restarts" -ge 2 ] || { diag; fail "expected >= 2 'device actor restarted' lines, found $restarts"; }
grep -qiE 'abandoned|failed for good|no longer served' "$TCMUD_LOG" && { diag; fail "device given up"; }
verified "daemon log: $panics panic lines, $restarts device actor restarts, device never given up"
errs=$(dmesg_new | grep -iE 'I/O error|critical')
[ -z "$errs" ] || { echo "$errs"; fail "the initiator saw I/O errors"; }
[ -z "$(ring_errors)" ] || { ring_errors; fail "kernel logged TCMU ring errors"; }
verified "dmesg: no ring errors, no I/O errors"

make_pattern /tmp/pat 8
dd if=/tmp/pat of="$SD" bs=1M seek=100 oflag=direct conv=fsync 2>/dev/null || fail "dd after the panics"
[ "$(dd if="$SD" bs=1M skip=100 count=8 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "readback after the panics"
verified "LUN still serves dd write/readback after all faults fired"
lun_remove user_1 flaky 0 || fail "LUN removal"
tcmud_stop
exit 0
