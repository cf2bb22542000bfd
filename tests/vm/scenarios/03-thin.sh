#!/bin/sh
# 03-thin.sh -- thin provisioning seen from a real initiator:
#   blkdiscard and fstrim give chunks back to the pool (tcmud pool info --json, daemon
#   stopped with SIGTERM for the offline CLI, then restarted and the LUNs re-adopted);
#   GET LBA STATUS reports the deallocated range; writing past the pool's capacity gives the
#   initiator a space-allocation error (sense 27/07) while the daemon stays up and another
#   LUN keeps working; a snapshot served as thin/<pool>/<snapshot> reads back the old data.
#   Identity: VPD 83h (NAA 6, company id 001405) and 80h are the same after a daemon
#   restart, and differ between two LUNs, a file// LUN and between a volume and its snapshot.
#   Write protection: the snapshot LUN and a `thin/p1/rovol;ro` LUN report WP (the kernel's
#   /sys/block/sdX/ro is 1); WRITE(10), WRITE SAME(16) and UNMAP sent with sg_raw on the sg
#   node fail with DATA PROTECT / WRITE PROTECTED (27/00); SYNCHRONIZE CACHE is GOOD.
#   Physical blocks: a `thin/p1/pbvol;lbppbe=3` LUN has 512-byte logical and 4 KiB physical
#   blocks in the kernel's queue limits (READ CAPACITY(16) exponent 3).
#   LOG SENSE: page 00h lists pages 00h, 0Ch, 2Fh; page 0Ch's used LBA mapping resource count
#   grows by the blocks written; READ DEFECT DATA (10)/(12) return empty lists.
# timeout: 480
. /vmlab/tcmud-lib.sh

MB=1048576
CHUNK=65536
tcmud_write_config p1:256MiB:64KiB p2:8MiB:64KiB
tcmud_start
SD0=$(lun_create user_1 vol1 $((64 * MB)) thin/p1/vol1 0) || { diag; fail "LUN 0"; }
SD1=$(lun_create user_1 fsvol $((64 * MB)) thin/p1/fsvol 1) || { diag; fail "LUN 1"; }
verified "thin/p1/vol1 -> $SD0, thin/p1/fsvol -> $SD1"

# ---------------------------------------------------------------- identity
vpd_hex() { sg_vpd -p "$1" -r "$2" 2>/dev/null | od -An -tx1 | tr -d ' \n'; }
id0=$(vpd_hex 0x83 "$SD0"); sn0=$(vpd_hex 0x80 "$SD0"); id1=$(vpd_hex 0x83 "$SD1")
sg_vpd -p di "$SD0"
case "$id0" in 0083????010300106001405*) ;; *) fail "VPD 83 of $SD0 does not start with an NAA 6 designator of company id 001405: '$id0'";; esac
[ ${#sn0} = $((2 * (4 + 32))) ] || fail "VPD 80 of $SD0 is not 32 characters: '$sn0'"
[ "$id0" != "$id1" ] || fail "two LUNs report the same VPD 83: $id0"
verified "VPD 83 of vol1: NAA 6 $(echo "$id0" | cut -c17-48), fsvol's differs; unit serial $(sg_vpd -p sn -r "$SD0" | tail -c 32)"
SDF=$(lun_create user_3 img $((16 * MB)) file//tmp/img1 4) || { diag; fail "LUN on file//tmp/img1"; }
idf=$(vpd_hex 0x83 "$SDF")
case "$idf" in 0083????010300106001405*) ;; *) fail "VPD 83 of the file LUN: '$idf'";; esac
[ "$idf" != "$id0" ] && [ "$idf" != "$id1" ] || fail "the file LUN shares a thin LUN's VPD 83"
if log_has 'keeps no user xattr'; then how="derived from st_dev/st_ino/machine-id (no user xattrs here)"; else how="xattr user.tcmud.id"; fi
verified "file//tmp/img1 -> $SDF: own NAA 6 $(echo "$idf" | cut -c17-48), identity from $how"

# ---------------------------------------------------------------- blkdiscard
make_pattern /tmp/pat 32
dd if=/tmp/pat of="$SD0" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "dd write"
mkfs.ext4 -q -F -E nodiscard "$SD1" > /tmp/mkfs.out 2>&1 || { cat /tmp/mkfs.out; fail "mkfs.ext4"; }
tcmud_stop
a0=$(allocated p1) || fail "pool info"
[ -n "$a0" ] && [ "$a0" -ge $((32 * MB / CHUNK)) ] || fail "allocated_chunks '$a0' < $((32 * MB / CHUNK)) after writing 32 MiB"
verified "after 32 MiB written + mkfs: pool p1 allocated_chunks=$a0 (>= $((32 * MB / CHUNK)))"
tcmud_start; wait_served vol1 fsvol
[ "$(dd if="$SD0" bs=1M count=32 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "data after restart"
verified "daemon restarted (SIGTERM + start): LUNs re-adopted, data intact"
wait_served img
[ "$(vpd_hex 0x83 "$SD0")" = "$id0" ] && [ "$(vpd_hex 0x80 "$SD0")" = "$sn0" ] && [ "$(vpd_hex 0x83 "$SD1")" = "$id1" ] ||
    fail "VPD 80/83 changed across a daemon restart: $id0 -> $(vpd_hex 0x83 "$SD0")"
[ "$(vpd_hex 0x83 "$SDF")" = "$idf" ] || fail "VPD 83 of the file LUN changed across a restart: $idf -> $(vpd_hex 0x83 "$SDF")"
verified "VPD 80/83 of the two thin LUNs and VPD 83 of the file LUN identical after the restart"

blkdiscard -o 0 -l $((16 * MB)) "$SD0" || { diag; fail "blkdiscard"; }
[ "$(dd if="$SD0" bs=1M count=16 iflag=direct 2>/dev/null | sha)" = "$(dd if=/dev/zero bs=1M count=16 2>/dev/null | sha)" ] ||
    fail "discarded range does not read as zeros"
[ "$(dd if="$SD0" bs=1M skip=16 count=16 iflag=direct 2>/dev/null | sha)" = "$(dd if=/tmp/pat bs=1M skip=16 count=16 2>/dev/null | sha)" ] ||
    fail "data next to the discarded range changed"
verified "blkdiscard 16 MiB: range reads zeros, neighbouring data intact"
sg_get_lba_status --lba=0 "$SD0" > /tmp/lba0.txt 2>&1; rc=$?
cat /tmp/lba0.txt
[ $rc = 0 ] || fail "sg_get_lba_status failed ($rc)"
grep -qiE 'dealloc|unmapped' /tmp/lba0.txt || fail "GET LBA STATUS at LBA 0: not reported deallocated"
sg_get_lba_status --lba=$((20 * MB / 512)) "$SD0" > /tmp/lba1.txt 2>&1 || fail "sg_get_lba_status (mapped range)"
cat /tmp/lba1.txt
grep -qiE 'mapped' /tmp/lba1.txt && ! grep -qiE 'dealloc|unmapped' /tmp/lba1.txt ||
    fail "GET LBA STATUS at 20 MiB: not reported mapped"
verified "GET LBA STATUS: LBA 0 deallocated, LBA $((20 * MB / 512)) mapped"
tcmud_stop
a1=$(allocated p1) || fail "pool info"
[ "$a1" -le $((a0 - 16 * MB / CHUNK)) ] || fail "blkdiscard of 16 MiB freed only $((a0 - a1)) chunks ($a0 -> $a1)"
verified "blkdiscard gave $((a0 - a1)) chunks back (>= $((16 * MB / CHUNK))): $a0 -> $a1"
tcmud_start; wait_served vol1 fsvol

# ---------------------------------------------------------------- fstrim
mkdir -p /mnt/t
mount -t ext4 -o nodiscard "$SD1" /mnt/t || fail "mount"
dd if=/dev/urandom of=/mnt/t/big bs=1M count=24 2>/dev/null || fail "file write"
sync
umount /mnt/t
tcmud_stop
b0=$(allocated p1) || fail "pool info"
tcmud_start; wait_served vol1 fsvol
mount -t ext4 -o nodiscard "$SD1" /mnt/t || fail "remount"
rm /mnt/t/big && sync
fstrim -v /mnt/t || { diag; fail "fstrim"; }
umount /mnt/t
tcmud_stop
b1=$(allocated p1) || fail "pool info"
[ "$b1" -le $((b0 - 20 * MB / CHUNK)) ] || fail "fstrim after deleting 24 MiB freed only $((b0 - b1)) chunks ($b0 -> $b1)"
verified "fstrim after deleting a 24 MiB file gave $((b0 - b1)) chunks back: $b0 -> $b1"

# ---------------------------------------------------------------- snapshot
make_pattern /tmp/patA 8
make_pattern /tmp/patB 8
tcmud_start; wait_served vol1 fsvol
dd if=/tmp/patA of="$SD0" bs=1M seek=40 oflag=direct conv=fsync 2>/dev/null || fail "write A"
tcmud_stop
"$TCMUD" volume snapshot /tmp/pools/p1 vol1 snap1 || fail "tcmud volume snapshot"
verified "tcmud volume snapshot p1 vol1 snap1 (offline)"
tcmud_start; wait_served vol1 fsvol
dd if=/tmp/patB of="$SD0" bs=1M seek=40 oflag=direct conv=fsync 2>/dev/null || fail "write B"
SD2=$(lun_create user_1 snap1 $((64 * MB)) thin/p1/snap1 2) || { diag; fail "LUN for the snapshot"; }
[ "$(dd if="$SD2" bs=1M skip=40 count=8 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/patA)" ] || fail "snapshot does not read the old data"
[ "$(dd if="$SD0" bs=1M skip=40 count=8 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/patB)" ] || fail "origin does not read the new data"
[ "$(dd if="$SD2" bs=1M skip=16 count=16 iflag=direct 2>/dev/null | sha)" = "$(dd if=/tmp/pat bs=1M skip=16 count=16 2>/dev/null | sha)" ] ||
    fail "snapshot: older data differs"
verified "snapshot LUN thin/p1/snap1 ($SD2) reads the data as it was; origin reads the new data"
id2=$(vpd_hex 0x83 "$SD2")
case "$id2" in 0083????010300106001405*) ;; *) fail "VPD 83 of the snapshot LUN: '$id2'";; esac
[ "$id2" != "$id0" ] && [ "$(vpd_hex 0x83 "$SD0")" = "$id0" ] || fail "snapshot LUN shares the origin's VPD 83 ($id2)"
verified "snapshot LUN has its own VPD 83 ($(echo "$id2" | cut -c17-48)); the origin's is unchanged"
if dd if=/tmp/patB of="$SD2" bs=1M count=1 oflag=direct 2>/dev/null; then fail "write to the read-only snapshot succeeded"; fi
verified "write to the snapshot LUN is refused"

# ---------------------------------------------------------------- write-protected LUNs
modprobe sg 2>/dev/null
# wp_check SD LUN NAME -- the kernel sees WP, writes fail with 27/00 at the target
wp_check() {
    [ "$(cat "/sys/block/${1#/dev/}/ro")" = 1 ] || fail "$3: /sys/block/${1#/dev/}/ro is not 1 (WP not seen)"
    _sg=$(loop_sg "$2") || fail "$3: no sg node for LUN $2"
    head -c 512 /dev/zero > /tmp/blk
    printf '\000\026\000\020\000\000\000\000\000\000\000\000\000\000\000\020\000\000\000\010\000\000\000\000' > /tmp/unmap.lst
    for _c in "WRITE(10):-s 512 -i /tmp/blk:2a 00 00 00 00 10 00 00 01 00" \
              "WRITE SAME(16) UNMAP:-s 512 -i /tmp/blk:93 08 00 00 00 00 00 00 00 10 00 00 00 08 00 00" \
              "UNMAP:-s 24 -i /tmp/unmap.lst:42 00 00 00 00 00 00 00 18 00"; do
        _n=${_c%%:*}; _r=${_c#*:}; _o=${_r%%:*}; _cdb=${_r#*:}
        # shellcheck disable=SC2086
        sg_raw $_o "$_sg" $_cdb > /tmp/wp.log 2>&1 && fail "$3: $_n was GOOD"
        grep -qiE 'write protected' /tmp/wp.log || { cat /tmp/wp.log; fail "$3: $_n did not fail with WRITE PROTECTED"; }
        _why=$(grep -iE 'write protected' /tmp/wp.log | head -n1 | sed 's/^ *//')
    done
    sg_raw "$_sg" 35 00 00 00 00 00 00 00 00 00 > /tmp/wp.log 2>&1 || { cat /tmp/wp.log; fail "$3: SYNCHRONIZE CACHE failed"; }
    verified "$3: /sys/block ro=1 (WP); WRITE(10), WRITE SAME(16) UNMAP, UNMAP -> $_why; SYNCHRONIZE CACHE GOOD"
}
wp_check "$SD2" 2 "snapshot LUN thin/p1/snap1"
SDR=$(lun_create user_1 rovol $((16 * MB)) "thin/p1/rovol;ro" 5) || { diag; fail "LUN on thin/p1/rovol;ro"; }
wp_check "$SDR" 5 "thin/p1/rovol;ro"
[ "$(cat "/sys/block/${SD0#/dev/}/ro")" = 0 ] || fail "the writable LUN vol1 reports WP"

# ---------------------------------------------------------------- physical block size
SDP=$(lun_create user_1 pbvol $((16 * MB)) "thin/p1/pbvol;lbppbe=3" 6) || { diag; fail "LUN on thin/p1/pbvol;lbppbe=3"; }
q=/sys/block/${SDP#/dev/}/queue
sg_readcap -l "$SDP" | grep -iE 'exponent|block length'
[ "$(cat $q/logical_block_size)" = 512 ] && [ "$(cat $q/physical_block_size)" = 4096 ] ||
    fail "pbvol: logical/physical block size $(cat $q/logical_block_size)/$(cat $q/physical_block_size), want 512/4096"
[ "$(cat "/sys/block/${SD0#/dev/}/queue/physical_block_size")" = 512 ] || fail "vol1 (no lbppbe): physical block size is not 512"
verified "thin/p1/pbvol;lbppbe=3: kernel sees 512-byte logical / 4096-byte physical blocks (discard_granularity $(cat $q/discard_granularity)); vol1 stays 512/512"

# ---------------------------------------------------------------- LOG SENSE, READ DEFECT DATA
# used_count SD -> the used LBA mapping resource count (LOG SENSE page 0Ch parameter 0002h)
used_count() {
    sg_raw -r 64 -o /tmp/lp.bin "$1" 4d 00 4c 00 00 00 00 00 40 00 > /dev/null 2>&1 || return 1
    od -An -tu1 -j 20 -N 4 /tmp/lp.bin | awk '{ print (($1 * 256 + $2) * 256 + $3) * 256 + $4 }'
}
# LOG SENSE page 00h (supported pages; the guest has no sg_logs)
sg_raw -r 64 -o /tmp/lp0.bin "$SDP" 4d 00 40 00 00 00 00 00 40 00 > /tmp/lp.log 2>&1 || { cat /tmp/lp.log; fail "LOG SENSE page 00h"; }
lp0=$(od -An -tx1 /tmp/lp0.bin | tr -d ' \n')
[ "$lp0" = 80000003000c2f ] || fail "LOG SENSE page 00h: $lp0, want DS, pages 00 0c 2f"
u0=$(used_count "$SDP") || fail "LOG SENSE page 0Ch"
dd if=/tmp/patA of="$SDP" bs=1M count=1 oflag=direct conv=fsync 2>/dev/null || fail "pbvol write"
u1=$(used_count "$SDP") || fail "LOG SENSE page 0Ch"
[ "$u1" -ge $((u0 + MB / 512)) ] || fail "used LBA mapping resource count $u0 -> $u1 after writing 1 MiB"
verified "LOG SENSE: page 00h lists 00h/0Ch/2Fh; 0Ch used LBA mapping resource count $u0 -> $u1 blocks after 1 MiB written"
sg_raw -r 32 -o /tmp/rdd10.bin "$SDP" 37 00 18 00 00 00 00 00 20 00 > /tmp/rdd.log 2>&1 || { cat /tmp/rdd.log; fail "READ DEFECT DATA(10)"; }
[ "$(od -An -tx1 /tmp/rdd10.bin | tr -d ' \n')" = 00180000 ] || { od -An -tx1 /tmp/rdd10.bin; fail "READ DEFECT DATA(10): not an empty list"; }
sg_raw -r 32 -o /tmp/rdd12.bin "$SDP" b7 18 00 00 00 00 00 00 00 20 00 00 > /tmp/rdd.log 2>&1 || { cat /tmp/rdd.log; fail "READ DEFECT DATA(12)"; }
[ "$(od -An -tx1 /tmp/rdd12.bin | tr -d ' \n')" = 0018000000000000 ] || { od -An -tx1 /tmp/rdd12.bin; fail "READ DEFECT DATA(12): not an empty list"; }
verified "READ DEFECT DATA (10)/(12): PLISTV+GLISTV, empty lists"

# ---------------------------------------------------------------- out of space
dmesg_mark
SD3=$(lun_create user_2 tiny $((64 * MB)) thin/p2/tiny 3) || { diag; fail "LUN on the 8 MiB pool"; }
if dd if=/dev/urandom of="$SD3" bs=1M count=16 oflag=direct 2>/tmp/dd3.err; then
    fail "16 MiB written to an 8 MiB pool without an error"
fi
cat /tmp/dd3.err
n=100
until dmesg_new | grep -qiE 'space allocation' || [ $n -le 0 ]; do sleep 0.1; n=$((n - 1)); done
dmesg_new | grep -iE 'space allocation|Data Protect|27/07|sense' | head -n 5
dmesg_new | grep -qiE 'space allocation' || { dmesg_new | tail -n 20; fail "kernel log shows no space-allocation error"; }
verified "write past the pool's capacity fails at the initiator: $(dmesg_new | grep -iE 'space allocation' | head -n1 | sed 's/^\[[^]]*\] //')"
tcmud_alive || { diag; fail "tcmud died on pool exhaustion"; }
make_pattern /tmp/patC 2
dd if=/tmp/patC of="$SD0" bs=1M seek=56 oflag=direct conv=fsync 2>/dev/null || fail "LUN 0 write after exhaustion"
[ "$(dd if="$SD0" bs=1M skip=56 count=2 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/patC)" ] || fail "LUN 0 readback after exhaustion"
verified "daemon still up; the LUN on the other pool still writes and reads correctly"
[ -z "$(ring_errors)" ] || { ring_errors; fail "kernel logged TCMU ring errors"; }
verified "no TCMU ring errors in dmesg"
exit 0
