#!/bin/sh
# 19-xcopy.sh -- EXTENDED COPY between two LUNs of one pool with sg_xcopy: INQUIRY 3PC, VPD 8Fh,
# RECEIVE COPY RESULTS; 32 MiB copied by sharing chunks (the pool allocates none for the copy),
# read back, writes to either side copy on write (the other keeps its data), an unaligned copy
# (read + write), a copy to a LUN of another pool (read + write); `pool check` clean.
# timeout: 600
. /vmlab/tcmud-lib.sh

MB=1048576
tcmud_write_config p1:512MiB:64KiB p2:256MiB:64KiB
tcmud_start
dmesg_mark
SRC=$(lun_create user_1 src $((64 * MB)) thin/p1/src 0) || { diag; fail "LUN src"; }
DST=$(lun_create user_1 dst $((64 * MB)) thin/p1/dst 1) || { diag; fail "LUN dst"; }
OTHER=$(lun_create user_1 oth $((64 * MB)) thin/p2/oth 2) || { diag; fail "LUN oth"; }
wait_served src dst oth
# sg_xcopy wants the sg nodes
SG_SRC=$(loop_sg 0) && SG_DST=$(loop_sg 1) && SG_OTH=$(loop_sg 2) || fail "no sg nodes"
verified "LUNs $SRC (thin/p1/src), $DST (thin/p1/dst), $OTHER (thin/p2/oth)"

for sd in "$SRC" "$DST" "$OTHER"; do sg_turs "$sd" > /dev/null 2>&1; sg_turs "$sd" > /dev/null 2>&1; done
sg_inq "$SRC" > /tmp/inq.out 2>&1 || { cat /tmp/inq.out; fail "sg_inq"; }
grep -q '3PC=1' /tmp/inq.out || { cat /tmp/inq.out; fail "INQUIRY: 3PC not set"; }
sg_vpd -p 0x8f "$SRC" > /tmp/vpd8f.out 2>&1 || { cat /tmp/vpd8f.out; fail "VPD 8Fh"; }
cat /tmp/vpd8f.out
# the LUNs just added: the first commands may get REPORTED LUNS DATA HAS CHANGED (from LIO)
for _ in 1 2 3; do sg_opcodes "$SRC" > /tmp/opc.out 2>&1 && break; done || { cat /tmp/opc.out; fail "sg_opcodes"; }
grep -iE '^ *83 ' /tmp/opc.out && grep -iE '^ *84 ' /tmp/opc.out || { cat /tmp/opc.out; fail "RSOC does not list 83h/84h"; }
verified "INQUIRY 3PC=1, VPD 8Fh decoded by sg_vpd, RSOC lists EXTENDED COPY and RECEIVE COPY RESULTS"

make_pattern /tmp/pat 32
dd if=/tmp/pat of="$SRC" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "writing the source"
PAT=$(sha /tmp/pat)
t0=$(now_cs)
sg_xcopy if="$SG_SRC" of="$SG_DST" bs=512 count=65536 bpt=16384 > /tmp/xcopy.out 2>&1 ||
    { cat /tmp/xcopy.out; diag; fail "sg_xcopy src -> dst"; }
t1=$(now_cs)
cat /tmp/xcopy.out
[ "$(dd if="$DST" bs=1M count=32 iflag=direct 2>/dev/null | sha)" = "$PAT" ] || fail "dst does not read the copied 32 MiB"
verified "sg_xcopy of 32 MiB src -> dst (4 commands of 8 MiB) in $(( (t1 - t0) * 10 )) ms; dst reads the source's bytes"

# writes to either side copy on write
make_pattern /tmp/new 1
dd if=/tmp/new of="$DST" bs=1M seek=0 oflag=direct conv=fsync 2>/dev/null || fail "write dst"
dd if=/tmp/new of="$SRC" bs=1M seek=5 oflag=direct conv=fsync 2>/dev/null || fail "write src"
[ "$(dd if="$SRC" bs=1M count=1 iflag=direct 2>/dev/null | sha)" = "$(dd if=/tmp/pat bs=1M count=1 2>/dev/null | sha)" ] ||
    fail "a write to dst changed src"
[ "$(dd if="$DST" bs=1M skip=5 count=1 iflag=direct 2>/dev/null | sha)" = "$(dd if=/tmp/pat bs=1M skip=5 count=1 2>/dev/null | sha)" ] ||
    fail "a write to src changed dst"
[ "$(dd if="$DST" bs=1M count=1 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/new)" ] || fail "dst lost its own write"
verified "a write to dst leaves src's data, a write to src leaves dst's (copy on write)"

# unaligned (read + write): 1000 blocks from block 1 of src to block 3 of dst at 40 MiB
sg_xcopy if="$SG_SRC" of="$SG_DST" bs=512 skip=1 seek=$((40 * 2048 + 3)) count=1000 > /tmp/xcopy2.out 2>&1 ||
    { cat /tmp/xcopy2.out; fail "unaligned sg_xcopy"; }
[ "$(dd if="$DST" bs=512 skip=$((40 * 2048 + 3)) count=1000 iflag=direct 2>/dev/null | sha)" = \
  "$(dd if=/tmp/pat bs=512 skip=1 count=1000 2>/dev/null | sha)" ] || fail "unaligned copy differs"
verified "unaligned sg_xcopy (1000 blocks, src+1 -> dst+3 within a chunk) reads back"

# another pool: read + write
sg_xcopy if="$SG_SRC" of="$SG_OTH" bs=512 count=16384 bpt=8192 > /tmp/xcopy3.out 2>&1 ||
    { cat /tmp/xcopy3.out; fail "sg_xcopy to another pool"; }
[ "$(dd if="$OTHER" bs=1M count=8 iflag=direct 2>/dev/null | sha)" = "$(dd if="$SRC" bs=1M count=8 iflag=direct 2>/dev/null | sha)" ] ||
    fail "copy to another pool differs"
verified "sg_xcopy of 8 MiB to a LUN of another pool (read + write) reads back"

sg_raw -r 64 "$DST" 84 03 00 00 00 00 00 00 00 00 00 00 00 40 00 00 > /tmp/rcr.out 2>&1 || { cat /tmp/rcr.out; fail "RECEIVE COPY RESULTS"; }
verified "RECEIVE COPY RESULTS (OPERATING PARAMETERS): $(sed -n '2,4p' /tmp/rcr.out | tr -s ' \n' ' ')"
[ -z "$(ring_errors)" ] || { ring_errors; fail "kernel logged TCMU ring errors"; }
dmesg_new | grep -iE 'I/O error|critical' && fail "kernel logged I/O errors"
lun_remove user_1 src 0 || fail "removing src"
lun_remove user_1 dst 1 || fail "removing dst"
lun_remove user_1 oth 2 || fail "removing oth"
tcmud_stop
# src: 32 MiB = 512 chunks of 64 KiB, +16 (its 1 MiB rewrite); dst: shares them, +16 (its 1 MiB)
# +8 (the unaligned copy's 1000 blocks at 40 MiB); a copy by data would have added 512 more.
A=$(allocated p1) || fail "pool info p1"
[ "$A" -le $((512 + 16 + 16 + 8)) ] || fail "p1 allocated $A chunks: the copy did not share them"
verified "pool p1: $A chunks allocated (a data copy would have needed >= 1064)"
for p in p1 p2; do
    "$TCMUD" pool check /tmp/pools/$p > /tmp/check.out 2>&1 || { cat /tmp/check.out; fail "pool check $p"; }
done
verified "tcmud pool check: both pools clean"
exit 0
