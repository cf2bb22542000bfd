#!/bin/sh
# 02-data.sh -- data integrity through tcmud on a thin volume: dd, fio with crc32c verify
# (4k random and 1M sequential, libaio, iodepth 32, direct), then ext4: mkfs, mount, files,
# umount, fsck -f clean, remount and checksums.
# timeout: 420
. /vmlab/tcmud-lib.sh

SIZE=$((128 << 20))
tcmud_write_config p1:512MiB:64KiB
tcmud_start
SD=$(lun_create user_1 lun0 $SIZE thin/p1/data 0) || { diag; fail "LUN not created"; }
verified "thin/p1/data served as $SD"
dmesg_mark

make_pattern /tmp/pat 32
dd if=/tmp/pat of="$SD" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "dd write"
[ "$(dd if="$SD" bs=1M count=32 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "dd readback"
# unwritten space of a thin volume reads as zeros
[ "$(dd if="$SD" bs=1M skip=100 count=8 iflag=direct 2>/dev/null | sha)" = \
  "$(dd if=/dev/zero bs=1M count=8 2>/dev/null | sha)" ] || fail "unwritten range is not zero"
verified "dd 32 MiB O_DIRECT bs=1M readback identical; unwritten 8 MiB reads zeros"

# odd-sized and unaligned (buffered) I/O through the page cache
dd if=/tmp/pat of="$SD" bs=3k count=333 seek=12345 conv=notrunc,fsync 2>/dev/null || fail "dd 3k"
echo 3 > /proc/sys/vm/drop_caches
[ "$(dd if="$SD" bs=3k count=333 skip=12345 2>/dev/null | sha)" = "$(dd if=/tmp/pat bs=3k count=333 2>/dev/null | sha)" ] || fail "3k readback"
verified "buffered 3 KiB-block writes at an unaligned offset read back identical"

fio_run rand4k "$SD" randwrite 4k 16M --offset=48M
verified "fio 4k randwrite 16 MiB, libaio qd32 direct, crc32c verify: $(fio_summary rand4k)"
fio_run seq1m "$SD" write 1M 48M --offset=64M
verified "fio 1M seq write 48 MiB, libaio qd32 direct, crc32c verify: $(fio_summary seq1m)"
fio_run mixed "$SD" randrw 16k 8M --offset=16M --rwmixread=50
verified "fio 16k randrw 8 MiB qd32 crc32c verify: $(fio_summary mixed)"

# ext4 on top
mkfs.ext4 -q -F -E nodiscard "$SD" > /tmp/mkfs.out 2>&1 || { cat /tmp/mkfs.out; fail "mkfs.ext4"; }
mkdir -p /mnt/t
mount -t ext4 "$SD" /mnt/t || { dmesg | tail; fail "mount ext4"; }
verified "mkfs.ext4 and mount"
i=0
while [ $i -lt 8 ]; do
    dd if=/dev/urandom of=/mnt/t/f$i bs=64k count=$(( (i + 1) * 8 )) 2>/dev/null || fail "write f$i"
    i=$((i + 1))
done
mkdir -p /mnt/t/dir/sub && cp /tmp/pat /mnt/t/dir/sub/pat || fail "cp pattern"
(cd /mnt/t && sha256sum f* dir/sub/pat) > /tmp/sums
sync
umount /mnt/t || fail "umount"
e2fsck -f -n "$SD" > /tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "e2fsck -f reports problems"; }
verified "10 files (~50 MiB incl. a 32 MiB one, in a directory tree) written, umount, e2fsck -f clean"
echo 3 > /proc/sys/vm/drop_caches
mount -t ext4 -o ro "$SD" /mnt/t || fail "remount"
(cd /mnt/t && sha256sum -c /tmp/sums) > /tmp/sumcheck 2>&1 || { cat /tmp/sumcheck; fail "file checksums after remount"; }
umount /mnt/t
verified "remount: all file checksums match"

[ -z "$(ring_errors)" ] || { ring_errors; fail "kernel logged TCMU ring errors"; }
dmesg_new | grep -iE 'I/O error|critical|Sense Key' && fail "kernel logged I/O errors"
verified "no TCMU ring errors or I/O errors in dmesg"
lun_remove user_1 lun0 0 || { diag; fail "LUN removal"; }
loop_teardown
tcmud_stop
"$TCMUD" pool check /tmp/pools/p1 > /tmp/check.out 2>&1 || { cat /tmp/check.out; fail "tcmud pool check after the run"; }
verified "tcmud pool check: clean"
exit 0
