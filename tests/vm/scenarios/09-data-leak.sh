#!/bin/sh
# 09-data-leak.sh -- no stale data-area bytes reach the initiator. The data area is filled
# with a pattern ("LEAKLEAK...": large direct writes, read back so the data-in pages hold it
# too), then sg_raw sends commands whose valid reply is empty or shorter than the initiator's
# buffer (READ of 0 blocks, TUR/SYNC CACHE/VERIFY/START STOP with a data-in buffer, INQUIRY,
# VPD, MODE SENSE, READ CAPACITY, RSOC, GET LBA STATUS, REQUEST SENSE, an unknown opcode,
# invalid fields, LBA out of range). The kernel copies the whole buffer unless READ_LEN says
# less (and ignores read_len 0): no returned buffer may hold a pattern byte sequence.
# timeout: 420
. /vmlab/tcmud-lib.sh

SIZE=$((64 << 20))
tcmud_write_config p1:256MiB:64KiB
tcmud_start
SD=$(lun_create user_1 lun0 $SIZE thin/p1/leak 0) || { diag; fail "LUN not created"; }
SG=$(loop_sg 0) || fail "no sg node for LUN 0"
verified "thin/p1/leak served as $SD, sg node $SG"
dmesg_mark

# 4 MiB of "LEAKLEAK..." at the start of the volume; the probes read elsewhere (never
# written: zeros), so any pattern byte they return came from the data area.
yes LEAKLEAK | tr -d '\n' | head -c $((4 << 20)) > /tmp/leak.pat
[ "$(head -c 16 /tmp/leak.pat)" = LEAKLEAKLEAKLEAK ] || fail "pattern file"
dd if=/tmp/leak.pat of="$SD" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "pattern write"
[ "$(dd if="$SD" bs=1M count=4 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/leak.pat)" ] ||
    fail "pattern readback"
verified "4 MiB pattern written (1 MiB direct writes) and read back identical"

# refill: 1 MiB direct writes and reads of the pattern put it in the lowest data blocks, the
# ones the next command gets
refill() {
    dd if=/tmp/leak.pat of="$SD" bs=1M count=1 oflag=direct 2>/dev/null || fail "refill write"
    dd if="$SD" of=/dev/null bs=1M count=1 iflag=direct 2>/dev/null || fail "refill read"
}

has_pattern() { grep -q -a -e LEAK -e EAKL -e AKLE -e KLEA "$1"; }

N=0; BYTES=0; LEAKS=0
# probe NAME LEN CDB... -- refill the data area, send CDB with a LEN-byte data-in buffer,
# check what came back
probe() {
    _name=$1 _len=$2; shift 2
    refill
    rm -f /tmp/probe.out
    sg_raw -r "$_len" -o /tmp/probe.out "$SG" "$@" > /tmp/probe.log 2>&1
    _rc=$?
    _got=0
    [ -f /tmp/probe.out ] && _got=$(wc -c < /tmp/probe.out)
    N=$((N + 1)); BYTES=$((BYTES + _got))
    if [ "$_got" -gt 0 ] && has_pattern /tmp/probe.out; then
        LEAKS=$((LEAKS + 1))
        echo "GUEST: LEAK: $_name (sg_raw rc $_rc) returned $_got bytes holding the pattern:"
        od -A d -c /tmp/probe.out | head -n 4
        grep -iE 'status|sense|received' /tmp/probe.log | head -n 4
    else
        vmsg "$_name: $_got bytes back (sg_raw rc $_rc), no pattern"
    fi
}

# LBA 0x8000 (16 MiB): never written
probe "READ(10) 0 blocks, 64 KiB buffer"     65536 28 00 00 00 80 00 00 00 00 00
probe "READ(16) 0 blocks, 64 KiB buffer"     65536 88 00 00 00 00 00 00 00 80 00 00 00 00 00 00 00
probe "READ(10) 1 block, 64 KiB buffer"      65536 28 00 00 00 80 00 00 00 01 00
probe "READ(16) 8 blocks, 64 KiB buffer"     65536 88 00 00 00 00 00 00 00 80 00 00 00 00 08 00 00
probe "TEST UNIT READY, 64 KiB buffer"       65536 00 00 00 00 00 00
probe "SYNCHRONIZE CACHE(10), 64 KiB buffer" 65536 35 00 00 00 00 00 00 00 00 00
probe "VERIFY(10) 8 blocks, 64 KiB buffer"   65536 2f 00 00 00 80 00 00 00 08 00
probe "START STOP UNIT, 64 KiB buffer"       65536 1b 00 00 00 01 00
probe "INQUIRY alloc 4096"                   4096 12 00 00 10 00 00
probe "INQUIRY alloc 65535"                  65535 12 00 00 ff ff 00
for p in 00 80 83 b0 b1 b2; do
    probe "INQUIRY VPD $p alloc 4096"        4096 12 01 $p 10 00 00
done
probe "MODE SENSE(6) all pages alloc 255"    255 1a 00 3f 00 ff 00
probe "MODE SENSE(10) all pages alloc 4096"  4096 5a 00 3f 00 00 00 00 10 00 00
probe "MODE SENSE(6) caching, 4096 buffer"   4096 1a 00 08 00 ff 00
probe "READ CAPACITY(10), 4096 buffer"       4096 25 00 00 00 00 00 00 00 00 00
probe "READ CAPACITY(16) alloc 4096"         4096 9e 10 00 00 00 00 00 00 00 00 00 00 10 00 00 00
probe "REPORT SUPPORTED OPCODES alloc 64 KiB" 65536 a3 0c 00 00 00 00 00 01 00 00 00 00
probe "GET LBA STATUS alloc 4096"            4096 9e 12 00 00 00 00 00 00 80 00 00 00 10 00 00 00
probe "REQUEST SENSE alloc 252, 4096 buffer" 4096 03 00 00 00 fc 00
probe "unknown opcode c5, 4096 buffer"       4096 c5 00 00 00 00 00 00 00 00 00
probe "INQUIRY EVPD=0 page 80 (invalid)"     4096 12 00 80 10 00 00
probe "MODE SENSE(6) page 2e (invalid)"      4096 1a 00 2e 00 ff 00
probe "READ(10) LBA out of range"            65536 28 00 ff ff ff 00 00 00 01 00
probe "READ(10) control byte NACA (invalid)" 65536 28 00 00 00 80 00 00 00 01 04
# commands beyond the kernel's emulation: short replies in oversized buffers, refusals
probe "LOG SENSE page 00 alloc 4096"          4096 4d 00 40 00 00 00 00 10 00 00
probe "LOG SENSE page 0c alloc 4096"          4096 4d 00 4c 00 00 00 00 10 00 00
probe "LOG SENSE page 2f alloc 4096"          4096 4d 00 6f 00 00 00 00 10 00 00
probe "LOG SENSE page 00/ff alloc 4096"       4096 4d 00 40 ff 00 00 00 10 00 00
probe "LOG SENSE page 0d (invalid), 4096"     4096 4d 00 4d 00 00 00 00 10 00 00
probe "READ DEFECT DATA(10) alloc 4096"       4096 37 00 18 00 00 00 00 10 00 00
probe "READ DEFECT DATA(12) alloc 64 KiB"     65536 b7 18 00 00 00 00 00 01 00 00 00 00
probe "ORWRITE(16) 0 blocks, 64 KiB buffer"   65536 8b 00 00 00 00 00 00 00 80 00 00 00 00 00 00 00
probe "SANITIZE CRYPTO ERASE (unsupported)"   4096 48 03 00 00 00 00 00 00 00 00
probe "SANITIZE EXIT FAILURE MODE, 4096"      4096 48 1f 00 00 00 00 00 00 00 00
# data-out CDBs sent with a data-in buffer: the ring does not say which way the buffer goes
probe "VERIFY(10) BYTCHK=1, 4096 data-in"    4096 2f 02 00 00 80 00 00 00 08 00
probe "WRITE(10) 8 blocks, 4096 data-in"     4096 2a 00 00 00 90 00 00 00 08 00
# (what that WRITE stored: the pages the kernel handed over, not ours to choose)
dd if="$SD" of=/tmp/wr.back bs=512 skip=$((0x9000)) count=8 iflag=direct 2>/dev/null
has_pattern /tmp/wr.back && vmsg "INFO: a WRITE(10) sent with a data-in buffer stored the data area's stale bytes (the kernel passes it with DMA_FROM_DEVICE)"

[ "$LEAKS" = 0 ] || fail "$LEAKS of $N commands returned bytes of the data area's pattern"
verified "$N commands with oversized or unexpected data-in buffers: $BYTES bytes returned, no pattern byte sequence in any"

# the LUN still works
[ "$(dd if="$SD" bs=1M count=4 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/leak.pat)" ] ||
    fail "pattern readback after the probes"
[ -z "$(ring_errors)" ] || { ring_errors; fail "kernel logged TCMU ring errors"; }
verified "pattern reads back after the probes; no TCMU ring errors in dmesg"
lun_remove user_1 lun0 0 || { diag; fail "LUN removal"; }
loop_teardown
tcmud_stop
exit 0
