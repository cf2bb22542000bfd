#!/bin/sh
# 04-multi-lun.sh -- four LUNs over two pools served at once by one tcmud; parallel fio with
# crc32c verify on all four (4k random and 1M sequential, libaio qd32 direct).
# timeout: 480
. /vmlab/tcmud-lib.sh

MB=1048576
tcmud_write_config pa:512MiB:64KiB pb:512MiB:128KiB
tcmud_start
dmesg_mark
SDS=""
n=0
for spec in pa/v0 pa/v1 pb/v2 pb/v3; do
    sd=$(lun_create user_1 d$n $((96 * MB)) "thin/$spec" $n) || { diag; fail "LUN $n (thin/$spec)"; }
    SDS="$SDS $sd"; n=$((n + 1))
done
wait_served d0 d1 d2 d3
verified "4 LUNs over 2 pools:$SDS (thin/pa/v0 thin/pa/v1 thin/pb/v2 thin/pb/v3)"

# identical serials would make multipath/udev merge them: each LUN must report its own
ser=""
for sd in $SDS; do ser="$ser $(sg_vpd -p 0x80 "$sd" | sed -n 's/.*Unit serial number: *//p')"; done
# shellcheck disable=SC2086 # one word per serial
[ "$(echo $ser | tr ' ' '\n' | sort -u | wc -l)" = 4 ] || fail "unit serial numbers are not distinct:$ser"
verified "distinct unit serial numbers:$ser"

# one fio process, one job per LUN and workload, all running at the same time
# shellcheck disable=SC2086 # one word per device
set -- $SDS
jobs4k="" jobs1m=""
i=0
for sd in "$@"; do
    jobs4k="$jobs4k --name=r4k$i --filename=$sd --offset=0 --size=16M"
    jobs1m="$jobs1m --name=s1m$i --filename=$sd --offset=32M --size=48M"
    i=$((i + 1))
done
# shellcheck disable=SC2086
fio --direct=1 --ioengine=libaio --iodepth=32 --rw=randwrite --bs=4k --verify=crc32c \
    --verify_fatal=1 --do_verify=1 --group_reporting $jobs4k --output-format=terse \
    --terse-version=3 > /tmp/fio-par4k.out 2>&1 || { cat /tmp/fio-par4k.out; diag; fail "parallel fio 4k"; }
verified "parallel fio 4k randwrite + crc32c verify, 4 LUNs x 16 MiB: $(fio_summary par4k)"
# shellcheck disable=SC2086
fio --direct=1 --ioengine=libaio --iodepth=32 --rw=write --bs=1M --verify=crc32c \
    --verify_fatal=1 --do_verify=1 --group_reporting $jobs1m --output-format=terse \
    --terse-version=3 > /tmp/fio-par1m.out 2>&1 || { cat /tmp/fio-par1m.out; diag; fail "parallel fio 1M"; }
verified "parallel fio 1M seq write + crc32c verify, 4 LUNs x 48 MiB: $(fio_summary par1m)"

# every thread of the daemon (those made at start and those made while serving) at the
# default CPU priority of daemon.nice, -10: field 19 of each thread's stat
nices=$(for t in /proc/"$TCMUD_PID"/task/*; do sed 's/.*) //' "$t/stat" | cut -d' ' -f17; done | sort | uniq -c | tr -s ' ')
nthreads=$(ls /proc/"$TCMUD_PID"/task | wc -l)
[ "$(echo "$nices" | sed 's/^ *//')" = "$nthreads -10" ] || fail "thread nice values (count value): $nices, of $nthreads threads"
verified "all $nthreads tcmud threads at nice -10"

# cross-check: each LUN holds its own data (no cross-talk between volumes/pools)
i=0
for sd in "$@"; do
    dd if=/dev/urandom of=/tmp/tag$i bs=1M count=1 2>/dev/null
    dd if=/tmp/tag$i of="$sd" bs=1M seek=90 oflag=direct conv=fsync 2>/dev/null || fail "tag write $sd"
    i=$((i + 1))
done
i=0
for sd in "$@"; do
    [ "$(dd if="$sd" bs=1M skip=90 count=1 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/tag$i)" ] || fail "LUN $i reads another LUN's data"
    i=$((i + 1))
done
verified "each LUN reads back its own 1 MiB tag (no cross-talk)"
[ -z "$(ring_errors)" ] || { ring_errors; fail "kernel logged TCMU ring errors"; }
dmesg_new | grep -iE 'I/O error|critical' && fail "kernel logged I/O errors"
verified "no TCMU ring errors or I/O errors in dmesg"
n=0
for sd in "$@"; do lun_remove user_1 d$n $n || fail "removing LUN $n"; n=$((n + 1)); done
tcmud_stop
for p in pa pb; do
    "$TCMUD" pool check /tmp/pools/$p > /tmp/check.out 2>&1 || { cat /tmp/check.out; fail "pool check $p"; }
done
verified "tcmud pool check: both pools clean"
exit 0
