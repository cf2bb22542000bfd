#!/bin/sh
# xcopy-guest.sh -- guest side of bench-xcopy.sh: a written volume copied to another LUN of
# the same pool with EXTENDED COPY (sg_xcopy, chunk sharing) and with dd through the
# initiator. Prints BENCH lines: wall time of each copy, bytes tcmud wrote meanwhile (its
# /proc/PID/io wchar: data file and metadata together), and the pool's allocated chunks.
# Arguments (VMLAB_TEST_ARGS): size=MiB (default 1024).
. /vmlab/tcmud-lib.sh

SIZE=1024
for a in $VMLAB_TEST_ARGS "$@"; do case $a in size=*) SIZE=${a#size=};; esac; done
MB=1048576
tcmud_write_config p1:$((SIZE * 3 + 256))MiB:64KiB
tcmud_start
SRC=$(lun_create user_1 src $((SIZE * MB)) thin/p1/src 0) || { diag; fail "LUN src"; }
DX=$(lun_create user_1 dx $((SIZE * MB)) thin/p1/dx 1) || { diag; fail "LUN dx"; }
DD=$(lun_create user_1 dd $((SIZE * MB)) thin/p1/dd 2) || { diag; fail "LUN dd"; }
wait_served src dx dd
SG_SRC=$(loop_sg 0) && SG_DX=$(loop_sg 1) || fail "no sg nodes"
for sd in "$SRC" "$DX" "$DD"; do sg_turs "$sd" > /dev/null 2>&1; sg_turs "$sd" > /dev/null 2>&1; done
make_pattern /tmp/pat 16
i=0
while [ $i -lt $((SIZE / 16)) ]; do
    dd if=/tmp/pat of="$SRC" bs=1M seek=$((i * 16)) oflag=direct 2>/dev/null || fail "filling src"
    i=$((i + 1))
done
sync
wchar() { awk '/^wchar/ { print $2 }' "/proc/$TCMUD_PID/io"; }
echo "BENCH: source: $SIZE MiB written (thin/p1/src, 64 KiB chunks)"

w0=$(wchar); t0=$(now_cs)
sg_xcopy if="$SG_SRC" of="$SG_DX" bs=512 count=$((SIZE * 2048)) bpt=32768 > /tmp/x.out 2>&1 ||
    { cat /tmp/x.out; diag; fail "sg_xcopy"; }
t1=$(now_cs); w1=$(wchar)
echo "BENCH: xcopy: $SIZE MiB in $(( (t1 - t0) * 10 )) ms (sg_xcopy, $((SIZE / 16)) commands of 16 MiB); tcmud wrote $(( (w1 - w0) / 1024 )) KiB"

w2=$(wchar); t2=$(now_cs)
dd if="$SRC" of="$DD" bs=1M iflag=direct oflag=direct conv=fsync 2>/dev/null || fail "dd"
t3=$(now_cs); w3=$(wchar)
echo "BENCH: dd: $SIZE MiB in $(( (t3 - t2) * 10 )) ms (bs=1M, direct, through the initiator); tcmud wrote $(( (w3 - w2) / 1024 )) KiB"

S=$(dd if="$SRC" bs=1M iflag=direct 2>/dev/null | sha)
[ "$(dd if="$DX" bs=1M iflag=direct 2>/dev/null | sha)" = "$S" ] || fail "xcopy target differs"
[ "$(dd if="$DD" bs=1M iflag=direct 2>/dev/null | sha)" = "$S" ] || fail "dd target differs"
echo "BENCH: both copies read back the source's $SIZE MiB"
lun_remove user_1 src 0; lun_remove user_1 dx 1; lun_remove user_1 dd 2
tcmud_stop
A=$(allocated p1) || fail "pool info"
echo "BENCH: pool p1: $A chunks of 64 KiB allocated for 3 volumes of $SIZE MiB (source $((SIZE * 16)), dd copy $((SIZE * 16)), xcopy copy shared)"
"$TCMUD" pool check /tmp/pools/p1 > /tmp/check.out 2>&1 || { cat /tmp/check.out; fail "pool check"; }
echo "BENCH: pool check clean"
exit 0
