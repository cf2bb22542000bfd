#!/bin/sh
# 14-cmd-timeout.sh -- a WRITE the kernel has failed back (cmd_time_out) is not executed:
#   a file// LUN with attrib/cmd_time_out = 3 holds pattern A; tcmud is frozen (SIGSTOP)
#   while dd writes pattern B over it (direct); the kernel fails the write back after 3 s and
#   dd reports an error; tcmud is resumed (SIGCONT): it logs the commands as older than
#   cmd_time_out and completes them without executing them, so the image still holds A.
#   The LUN keeps working afterwards (a new write lands), no ring error in dmesg.
# timeout: 300
. /vmlab/tcmud-lib.sh

MB=1048576
A=$CFG/core/user_1
tcmud_write_config p1:256MiB:64KiB
dmesg_mark
tcmud_start
lines=$(wc -l < "$TCMUD_LOG")
D=$(bg_wait 30 tcmu_create user_1 t14 $((16 * MB)) file//tmp/t14.img hw_max_sectors=1024) ||
    { diag; fail "creating the backstore"; }
# cmd_time_out may only change before the device is exported (no RECONFIG tells tcmud):
# tcmud reads it again when commands come (the SCSI scan of the export is the first), not
# periodically per idle device
echo 3 > "$A/t14/attrib/cmd_time_out" || fail "setting cmd_time_out"
SD=$(loop_attach "$D" 0 60) || { diag; fail "exporting the LUN"; }
wait_log "$lines" 'cmd_time_out of the device.*3s' ||
    { diag; fail "tcmud did not pick up cmd_time_out = 3"; }
verified "tcmud read cmd_time_out: $(log_grep 'cmd_time_out of the device' | tail -n1 | cut -c1-100)"
make_pattern /tmp/patA 1
make_pattern /tmp/patB 1
dd if=/tmp/patA of="$SD" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "writing pattern A"
[ "$(dd if=/tmp/t14.img bs=1M count=1 2>/dev/null | sha)" = "$(sha /tmp/patA)" ] || fail "image does not hold A"

lines=$(wc -l < "$TCMUD_LOG")
tcmud_freeze
t0=$(now_cs)
dd if=/tmp/patB of="$SD" bs=512K count=2 oflag=direct 2>/tmp/dd.err
rc=$?
t1=$(now_cs)
[ $rc != 0 ] || { kill -CONT "$TCMUD_PID"; fail "dd succeeded while tcmud was frozen"; }
verified "dd of pattern B failed while tcmud was frozen ($(( (t1 - t0) / 100 )) s: $(tail -n1 /tmp/dd.err | cut -c1-60))"
kill -CONT "$TCMUD_PID"
wait_log "$lines" 'older than cmd_time_out not executed'
logged=$?
# A read through the LUN after the late commands: tcmud fetched them before it.
dd if="$SD" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null || fail "read after SIGCONT"
[ "$(dd if=/tmp/t14.img bs=1M count=1 2>/dev/null | sha)" = "$(sha /tmp/patA)" ] ||
    { diag; fail "the timed-out WRITE was executed: the image no longer holds A"; }
[ $logged = 0 ] || { diag; fail "tcmud did not log the timed-out commands"; }
n=$(tail -n +$((lines + 1)) "$TCMUD_LOG" | grep -c 'older than cmd_time_out not executed')
verified "after SIGCONT: $n command(s) logged as older than cmd_time_out and not executed; the image still holds A"

make_pattern /tmp/patC 1
dd if=/tmp/patC of="$SD" bs=1M oflag=direct conv=fsync 2>/dev/null || { diag; fail "write after the timeouts"; }
[ "$(dd if=/tmp/t14.img bs=1M count=1 2>/dev/null | sha)" = "$(sha /tmp/patC)" ] || fail "new write not in the image"
verified "the LUN serves writes again (pattern C in the image)"
lun_remove user_1 t14 0 || { diag; fail "removal did not complete"; }
tcmud_alive || { diag; fail "tcmud died"; }
errs=$(ring_errors)
[ -z "$errs" ] || { echo "$errs"; fail "kernel logged TCMU ring errors"; }
tcmud_stop
log_has 'timed_out: [1-9]' && verified "stats at stop: $(log_grep 'timed_out: [1-9]' | tail -n1 | grep -o 'timed_out: [0-9]*')"
exit 0
