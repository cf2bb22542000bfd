#!/bin/sh
# 16-live-ops.sh -- operating a running daemon through its control socket, with LUNs serving:
#   - `tcmud status` lists the served devices and the open pool;
#   - 20 live snapshots + clones of a volume under a stamping writer (every 4 KiB block holds
#     "STAMP <gen> <block>", each write acknowledged when dd's O_DIRECT write returned), while
#     fio randwrite+verify runs on another LUN of the same pool; clones attached as LUNs hold,
#     in every block, a write at least as new as the last one acknowledged before the snapshot
#     request and none issued after it returned;
#   - deleting a served volume is refused; growing a served volume reaches the initiator
#     (configfs dev_size -> RECONFIG -> the volume grows, CAPACITY DATA HAS CHANGED);
#   - `tcmud log-level` applies a valid filter and refuses a bad one;
#   - the metrics endpoint (metrics = "127.0.0.1:9771"): the fio LUN's written and read byte
#     counters rise by exactly what fio's passes wrote and verified (within 1 %); its write and
#     read latency histograms count at most fio's commands (the block layer may merge some) with
#     19 buckets ending at +Inf = _count; the pool's commit histogram and free bytes are there;
#   - no I/O error in dmesg, and `tcmud pool check` is clean once the daemon stopped.
# timeout: 900
. /vmlab/tcmud-lib.sh

MB=1048576
BLOCKS=64
POOL=/tmp/pools/p1
tcmud_write_config p1:512MiB:64KiB
awk '{ print } /^\[daemon\]$/ { print "metrics = \"127.0.0.1:9771\"" }' "$TCMUD_CONF" > /tmp/conf.new &&
    mv /tmp/conf.new "$TCMUD_CONF" || fail "config"
tcmud_start
SDA=$(lun_create user_1 fiovol $((64 * MB)) thin/p1/fiovol 0) || { diag; fail "LUN fiovol"; }
SDB=$(lun_create user_1 stamp $((4 * MB)) thin/p1/stamp 1) || { diag; fail "LUN stamp"; }
verified "thin/p1/fiovol -> $SDA, thin/p1/stamp -> $SDB"

"$TCMUD" status > /tmp/status.txt 2>&1 || { cat /tmp/status.txt; fail "tcmud status"; }
cat /tmp/status.txt
grep -q 'thin/p1/fiovol' /tmp/status.txt && grep -q 'thin/p1/stamp' /tmp/status.txt ||
    fail "tcmud status does not list both LUNs"
"$TCMUD" status --json > /tmp/status.json || fail "tcmud status --json"
grep -q '"open": true' /tmp/status.json || fail "status --json: pool p1 not open"
verified "tcmud status: both devices served, pool p1 open"

# metric VALUE of the fiovol LUN (name without _total for counters)
metric() {
    wget -q -O - http://127.0.0.1:9771/metrics > /tmp/metrics.txt || return 1
    sed -n "s/^$1{minor=\"[0-9]*\",device=\"user_1\/fiovol\",dev_config=\"thin\/p1\/fiovol\"} //p" /tmp/metrics.txt
}

# _count of the fiovol LUN's latency histogram for op $1
ops() {
    wget -q -O - http://127.0.0.1:9771/metrics > /tmp/metrics.txt || return 1
    sed -n "s/^tcmud_device_command_duration_seconds_count{minor=\"[0-9]*\",device=\"user_1\/fiovol\",dev_config=\"thin\/p1\/fiovol\",op=\"$1\"} //p" /tmp/metrics.txt
}

# ------------------------------------------------------------- stamping writer + fio
ow0=$(ops write) && or0=$(ops read) && [ -n "$ow0" ] && [ -n "$or0" ] ||
    { cat /tmp/metrics.txt; fail "metrics endpoint: no fiovol latency histograms"; }
w0=$(metric tcmud_device_written_bytes_total) && r0=$(metric tcmud_device_read_bytes_total) &&
    [ -n "$w0" ] && [ -n "$r0" ] || { cat /tmp/metrics.txt; fail "metrics endpoint: no fiovol counters"; }
dmesg_mark
rm -f /tmp/stop /tmp/fio_failed
echo 0 > /tmp/acked
stamp_block() { # GEN BLOCK -> /tmp/blk (4 KiB)
    { printf 'STAMP %010d %04d\n' "$1" "$2"; head -c $((4096 - 22)) /dev/zero; } > /tmp/blk
}
(
    g=0
    while [ ! -e /tmp/stop ]; do
        g=$((g + 1)); b=$((g % BLOCKS))
        stamp_block $g $b
        dd if=/tmp/blk of="$SDB" bs=4096 seek=$b count=1 oflag=direct conv=notrunc 2>/dev/null ||
            { echo "write $g failed" > /tmp/writer_failed; exit 1; }
        echo $g > /tmp/acked.new && mv /tmp/acked.new /tmp/acked
    done
) &
WRITER=$!
(
    n=0
    while [ ! -e /tmp/stop ]; do
        n=$((n + 1))
        fio --name=live$n --filename="$SDA" --direct=1 --ioengine=libaio --iodepth=16 \
            --rw=randwrite --bs=4k --size=16M --verify=crc32c --verify_fatal=1 --do_verify=1 \
            --randseed=$n > /tmp/fio-live.out 2>&1 || { cp /tmp/fio-live.out /tmp/fio_failed; exit 1; }
        echo $n > /tmp/fio_runs
    done
) &
FIO=$!
# Every block written at least once before the first snapshot.
n=600
until [ "$(cat /tmp/acked)" -ge $((BLOCKS * 2)) ]; do
    [ -e /tmp/writer_failed ] && fail "stamping writer: $(cat /tmp/writer_failed)"
    [ $n -le 0 ] && fail "stamping writer made no progress in 60 s ($(cat /tmp/acked) writes)"
    sleep 0.1; n=$((n - 1))
done

: > /tmp/snaps
i=1
while [ $i -le 20 ]; do
    before=$(cat /tmp/acked)
    "$TCMUD" volume snapshot $POOL stamp s$i > /tmp/snap.out 2>&1 || { cat /tmp/snap.out; diag; fail "live snapshot $i"; }
    after=$(cat /tmp/acked)
    "$TCMUD" volume clone $POOL s$i c$i > /tmp/clone.out 2>&1 || { cat /tmp/clone.out; diag; fail "live clone $i"; }
    echo "$i $before $after" >> /tmp/snaps
    # The writer goes on between snapshots (no two snapshots of the same state).
    n=600
    until [ "$(cat /tmp/acked)" -gt $((after + 3)) ]; do
        [ -e /tmp/writer_failed ] && fail "stamping writer: $(cat /tmp/writer_failed)"
        [ $n -le 0 ] && fail "stamping writer stalled after snapshot $i"
        sleep 0.1; n=$((n - 1))
    done
    i=$((i + 1))
done
# fio has completed at least one whole write+verify pass during the snapshots.
n=3000
until [ -s /tmp/fio_runs ] || [ -e /tmp/fio_failed ]; do
    [ $n -le 0 ] && fail "fio did not finish a pass in 300 s"
    sleep 0.1; n=$((n - 1))
done
touch /tmp/stop
wait $WRITER; wait $FIO
[ -e /tmp/writer_failed ] && fail "stamping writer: $(cat /tmp/writer_failed)"
[ -e /tmp/fio_failed ] && { cat /tmp/fio_failed; diag; fail "fio randwrite+verify failed during live snapshots"; }
verified "20 live snapshots + clones taken while writing ($(cat /tmp/acked) stamped writes, $(cat /tmp/fio_runs) fio write+verify passes without error)"
passes=$(cat /tmp/fio_runs)
w1=$(metric tcmud_device_written_bytes_total); r1=$(metric tcmud_device_read_bytes_total)
want=$((passes * 16 * MB))
for pair in "written $((w1 - w0))" "read $((r1 - r0))"; do
    set -- $pair
    d=$(( $2 > want ? $2 - want : want - $2 ))
    [ $((d * 100)) -le $want ] || fail "metrics: fiovol $1 bytes rose by $2, fio's $passes passes moved $want"
done
grep -q '^tcmud_pool_capacity_bytes{pool="p1"} 536870912$' /tmp/metrics.txt || { cat /tmp/metrics.txt; fail "metrics: pool capacity"; }
verified "metrics: fiovol written +$((w1 - w0)), read +$((r1 - r0)) bytes for fio's $passes passes of 16 MiB written and verified; pool p1 capacity 512 MiB"
ow1=$(ops write); or1=$(ops read)
cmds=$((passes * 4096))
for pair in "write $((ow1 - ow0))" "read $((or1 - or0))"; do
    set -- $pair
    [ "$2" -gt 0 ] && [ $(($2 * 100)) -le $((cmds * 101)) ] ||
        fail "metrics: fiovol $1 histogram counted $2 commands for fio's $cmds 4 KiB ${1}s"
    n=$(grep -c "^tcmud_device_command_duration_seconds_bucket{le=\"[^\"]*\",minor=\"[0-9]*\",device=\"user_1/fiovol\",dev_config=\"thin/p1/fiovol\",op=\"$1\"} " /tmp/metrics.txt)
    [ "$n" -eq 19 ] || { cat /tmp/metrics.txt; fail "metrics: fiovol $1 histogram has $n buckets, not 19"; }
done
inf=$(sed -n 's/^tcmud_device_command_duration_seconds_bucket{le="+Inf",minor="[0-9]*",device="user_1\/fiovol",dev_config="thin\/p1\/fiovol",op="write"} //p' /tmp/metrics.txt)
[ "$inf" = "$(ops write)" ] || fail "metrics: write +Inf bucket $inf is not the count"
commits=$(sed -n 's/^tcmud_pool_commit_duration_seconds_count{pool="p1"} //p' /tmp/metrics.txt)
[ "${commits:-0}" -ge 20 ] || { cat /tmp/metrics.txt; fail "metrics: pool p1 counted ${commits:-no} commits after 20 snapshots"; }
grep -q '^tcmud_pool_free_bytes{pool="p1"} [0-9]' /tmp/metrics.txt || fail "metrics: pool free bytes"
verified "metrics: fiovol latency histograms counted +$((ow1 - ow0)) writes, +$((or1 - or0)) reads (fio: $cmds each), 19 buckets; pool p1: $commits commits"

# ------------------------------------------------------------- clones hold what was acknowledged
lun=2
for i in 1 7 14 20; do
    # shellcheck disable=SC2046 # split into the line's fields on purpose
    set -- $(sed -n "${i}p" /tmp/snaps); before=$2; after=$3
    SDC=$(lun_create user_1 c$i $((4 * MB)) thin/p1/c$i $lun) || { diag; fail "LUN clone c$i"; }
    b=0
    while [ $b -lt $BLOCKS ]; do
        rec=$(dd if="$SDC" bs=4096 skip=$b count=1 iflag=direct 2>/dev/null | head -c 21)
        set -- $rec
        [ "$1" = STAMP ] || fail "clone c$i block $b: no stamp ('$rec')"
        g=$(echo "$2" | sed 's/^0*//'); blk=$(echo "$3" | sed 's/^0*//')
        [ "${blk:-0}" = $b ] || fail "clone c$i block $b holds block ${blk:-0}'s write"
        # the last write to block b acknowledged before the request
        last=$((before - ((before - b) % BLOCKS)))
        [ "$g" -ge $last ] || fail "clone c$i block $b: write $g, but write $last was acknowledged before snapshot $i"
        [ "$g" -le $((after + 1)) ] || fail "clone c$i block $b: write $g was issued after snapshot $i returned ($after)"
        b=$((b + 1))
    done
    verified "clone c$i (snapshot $i: acknowledged $before before, $after after): all $BLOCKS blocks consistent"
    lun=$((lun + 1))
done

# ------------------------------------------------------------- served volumes
if "$TCMUD" volume delete $POOL stamp > /tmp/del.out 2>&1; then fail "deleting a served volume succeeded"; fi
grep -q 'served by /dev/uio' /tmp/del.out || { cat /tmp/del.out; fail "delete refusal does not name the LUN"; }
verified "volume delete of a served volume refused: $(cat /tmp/del.out)"
sd=${SDA#/dev/}
[ "$(cat /sys/block/$sd/size)" = $((64 * MB / 512)) ] || fail "fiovol is not 64 MiB to begin with"
"$TCMUD" volume resize $POOL fiovol --size 96MiB > /tmp/rs.out 2>&1 || { cat /tmp/rs.out; diag; fail "live resize"; }
cat /tmp/rs.out
echo 1 > /sys/block/$sd/device/rescan
n=100
until [ "$(cat /sys/block/$sd/size)" = $((96 * MB / 512)) ]; do
    [ $n -le 0 ] && fail "$SDA is $(cat /sys/block/$sd/size) sectors after growing fiovol to 96 MiB"
    sleep 0.1; n=$((n - 1))
done
dd if=/dev/urandom of=/tmp/tail bs=1M count=1 2>/dev/null
dd if=/tmp/tail of="$SDA" bs=1M seek=95 oflag=direct conv=notrunc 2>/dev/null || fail "write past the old end"
[ "$(dd if="$SDA" bs=1M skip=95 count=1 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/tail)" ] || fail "read past the old end"
verified "served volume grown online to 96 MiB: the initiator sees $(cat /sys/block/$sd/size) sectors and the new last MiB reads back"

# ------------------------------------------------------------- log level
"$TCMUD" log-level 'info,tcmud::control=debug' || fail "log-level"
if "$TCMUD" log-level 'tcmud=[bad' 2> /tmp/ll.err; then fail "a bad log filter was accepted"; fi
verified "log-level applied a filter and refused a bad one ($(cat /tmp/ll.err))"

# ------------------------------------------------------------- aftermath
if dmesg_new | grep -iE 'I/O error|critical target error|ring broken' ; then fail "I/O errors in dmesg"; fi
tcmud_stop
"$TCMUD" pool check $POOL > /tmp/check.out 2>&1 || { cat /tmp/check.out; fail "pool check after the live operations"; }
verified "no I/O error in dmesg; pool check clean: $(tail -n 1 /tmp/check.out)"
