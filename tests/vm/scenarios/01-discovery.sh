#!/bin/sh
# 01-discovery.sh -- tcmud discovers a new user backstore (netlink ADDED_DEVICE) whose
# dev_config is thin/<pool>/<volume>, auto-creates the volume, serves it; tcm_loop exposes
# it as /dev/sdX and the SCSI identity/limits the code claims are visible to the initiator.
# timeout: 240
. /vmlab/tcmud-lib.sh

SIZE=$((64 << 20))
tcmud_write_config p1:256MiB:64KiB
tcmud_start
SD=$(lun_create user_1 lun0 $SIZE thin/p1/vol1 0) || { diag; fail "LUN for thin/p1/vol1 not created"; }
verified "ADDED_DEVICE thin/p1/vol1 -> tcm_loop LUN 0 = $SD"
check "tcmud holds the device's /dev/$(tcmu_uio lun0) open (it serves it)" holds_uio "$TCMUD_PID" lun0
[ "$(cat "/sys/block/${SD#/dev/}/size")" = $((SIZE / 512)) ] || fail "capacity $(cat "/sys/block/${SD#/dev/}/size") sectors"
verified "block device capacity $((SIZE / 512)) sectors"

# ---- standard INQUIRY
sg_inq "$SD" > /tmp/inq.txt 2>&1 || { cat /tmp/inq.txt; fail "sg_inq"; }
cat /tmp/inq.txt
grep -q 'PQual=0 *PDT=0' /tmp/inq.txt || fail "INQUIRY: not a direct-access device"
# what the code claims: LunConfig::default() (src/scsi/lun.rs) and spc/inquiry.rs
grep -qE 'Vendor identification: *TCMUD' /tmp/inq.txt || fail "INQUIRY: vendor is not TCMUD"
grep -qE 'Product identification: *VIRTUAL-DISK' /tmp/inq.txt || fail "INQUIRY: product is not VIRTUAL-DISK"
grep -qE 'Product revision level: *0001' /tmp/inq.txt || fail "INQUIRY: revision is not 0001"
grep -qE 'version=0x06' /tmp/inq.txt || fail "INQUIRY: version is not 0x06 (SPC-4)"
verified "INQUIRY: PDT 0, $(grep 'Vendor identification' /tmp/inq.txt | sed 's/ *Vendor identification: *//') / $(grep 'Product identification' /tmp/inq.txt | sed 's/ *Product identification: *//'), $(grep -o 'version=0x0[0-9]' /tmp/inq.txt)"

# ---- VPD pages
sg_vpd -p 0x00 "$SD" > /tmp/vpd00.txt 2>&1 || { cat /tmp/vpd00.txt; fail "sg_vpd page 00"; }
cat /tmp/vpd00.txt
# sg_vpd prints the names of the listed pages: 80 sn, 83 di, b0 bl, b1 bdc, b2 lbpv
for p in 'Unit serial number' 'Device identification' 'Block limits' 'Block device characteristics' \
         'Logical block provisioning'; do
    grep -q "$p" /tmp/vpd00.txt || fail "VPD 00 does not list page '$p'"
done
verified "VPD 00 lists pages 80 83 b0 b1 b2"
sg_vpd -p 0x80 "$SD" > /tmp/vpd80.txt 2>&1 || { cat /tmp/vpd80.txt; fail "sg_vpd page 80"; }
cat /tmp/vpd80.txt
SERIAL=$(sed -n 's/.*Unit serial number: *//p' /tmp/vpd80.txt)
# the volume's or image's 128-bit identity (src/scsi/identity.rs): 32 hex digits
echo "$SERIAL" | grep -qE '^[0-9a-f]{32}$' || fail "VPD 80: unit serial number '$SERIAL' is not 32 hex digits"
verified "VPD 80: unit serial number '$SERIAL'"
sg_vpd -p 0x83 "$SD" > /tmp/vpd83.txt 2>&1 || { cat /tmp/vpd83.txt; fail "sg_vpd page 83"; }
cat /tmp/vpd83.txt
# src/scsi/identity.rs: NAA 6 (IEEE Registered Extended), company id 001405, then the
# first 100 bits of the identity (the serial's first 25 hex digits)
grep -q 'designator type: NAA' /tmp/vpd83.txt || fail "VPD 83: no NAA designator"
NAA=0x6001405$(echo "$SERIAL" | cut -c1-25)
grep -qiE "$NAA" /tmp/vpd83.txt || fail "VPD 83: NAA designator is not $NAA (NAA 6, company 001405, the serial's first 100 bits)"
grep -q "vendor id: TCMUD" /tmp/vpd83.txt || fail "VPD 83: no T10 vendor id designator"
verified "VPD 83: NAA 6 designator $NAA and T10 vendor id TCMUD"
sg_vpd -p 0xb0 "$SD" > /tmp/vpdb0.txt 2>&1 || { cat /tmp/vpdb0.txt; fail "sg_vpd page b0"; }
cat /tmp/vpdb0.txt
mul=$(sed -n 's/.*Maximum unmap LBA count: *\([0-9]*\).*/\1/p' /tmp/vpdb0.txt)
[ -n "$mul" ] && [ "$mul" -gt 0 ] || fail "VPD b0: maximum unmap LBA count missing or 0"
mtl=$(sed -n 's/.*Maximum transfer length: *\([0-9]*\).*/\1/p' /tmp/vpdb0.txt)
verified "VPD b0: max unmap LBA count $mul, max transfer length ${mtl:-?}"
sg_vpd -p 0xb2 "$SD" > /tmp/vpdb2.txt 2>&1 || { cat /tmp/vpdb2.txt; fail "sg_vpd page b2"; }
cat /tmp/vpdb2.txt
grep -qE 'Unmap command supported \(LBPU\): 1' /tmp/vpdb2.txt || fail "VPD b2: LBPU != 1"
grep -qiE 'Provisioning type: 2|thin' /tmp/vpdb2.txt || fail "VPD b2: provisioning type is not thin"
verified "VPD b2: LBPU=1, thin provisioning$(grep -qE 'Write same \(16\) with unmap bit supported \(LBPWS\): 1' /tmp/vpdb2.txt && echo ', LBPWS=1')"

# ---- READ CAPACITY(16)
sg_readcap -l "$SD" > /tmp/rc.txt 2>&1 || { cat /tmp/rc.txt; fail "sg_readcap -l"; }
cat /tmp/rc.txt
grep -qE 'lbpme=1' /tmp/rc.txt || fail "READ CAPACITY(16): LBPME != 1"
grep -qE "Last (LBA|logical block address)=$((SIZE / 512 - 1)) " /tmp/rc.txt || fail "READ CAPACITY(16): wrong last LBA"
grep -qE 'Logical block length=512 bytes' /tmp/rc.txt || fail "READ CAPACITY(16): block length"
verified "READ CAPACITY(16): last LBA $((SIZE / 512 - 1)), 512-byte blocks, LBPME=1$(grep -q 'lbprz=1' /tmp/rc.txt && echo ', LBPRZ=1')"

# ---- MODE SENSE
sg_modes "$SD" > /tmp/modes.txt 2>&1 || { cat /tmp/modes.txt; fail "sg_modes"; }
cat /tmp/modes.txt
sg_modes -p 0x08 "$SD" > /tmp/mode08.txt 2>&1 || { cat /tmp/mode08.txt; fail "sg_modes caching page"; }
grep -qi 'caching' /tmp/mode08.txt || fail "MODE SENSE: no caching mode page"
sg_modes -p 0x0a "$SD" > /tmp/mode0a.txt 2>&1 || { cat /tmp/mode0a.txt; fail "sg_modes control page"; }
grep -qi 'control' /tmp/mode0a.txt || fail "MODE SENSE: no control mode page"
verified "MODE SENSE: caching (08) and control (0a) pages; $(grep -oE 'WP=[01]' /tmp/modes.txt | head -n1)"

# ---- REPORT SUPPORTED OPERATION CODES
sg_opcodes "$SD" > /tmp/ops.txt 2>&1 || { cat /tmp/ops.txt; fail "sg_opcodes"; }
cat /tmp/ops.txt
for op in 'Read\(10\)' 'Write\(10\)' 'Read\(16\)' 'Write\(16\)' 'Unmap' 'Synchronize cache\(10\)' \
          'Inquiry' 'Read capacity\(10\)' 'Write same\(16\)'; do
    grep -qiE "$op" /tmp/ops.txt || fail "REPORT SUPPORTED OPCODES lacks $op"
done
verified "REPORT SUPPORTED OPERATION CODES: $(grep -cE '^ +[0-9a-f][0-9a-f] ' /tmp/ops.txt) entries incl. READ/WRITE(10/16), UNMAP, WRITE SAME(16), SYNC CACHE"

# ---- a little data, then teardown and the auto-created volume on disk
make_pattern /tmp/pat 8
dd if=/tmp/pat of="$SD" bs=1M oflag=direct 2>/dev/null || fail "dd write"
[ "$(dd if="$SD" bs=1M count=8 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "readback"
verified "8 MiB written and read back"

# ---- the write cache the initiator chooses (MODE SELECT) survives a daemon restart
CT=$(echo "/sys/block/${SD#/dev/}"/device/scsi_disk/*/cache_type)
WC=$CFG/core/user_1/lun0/attrib/emulate_write_cache
[ "$(cat "$CT")" = "write through" ] && [ "$(cat "$WC")" = 0 ] || fail "initial cache: $(cat "$CT"), configfs $(cat "$WC")"
echo "write back" > "$CT" || fail "MODE SELECT WCE=1 (cache_type write back)"
wait_content "$WC" 1 || fail "configfs emulate_write_cache is $(cat "$WC") 10 s after MODE SELECT WCE=1"
tcmud_stop; tcmud_start; wait_served lun0
echo 1 > "/sys/block/${SD#/dev/}/device/rescan"
[ "$(cat "$CT")" = "write back" ] || fail "after a daemon restart the cache is '$(cat "$CT")'"
# caching page byte 2 (the third byte of the page dump), bit 2 = WCE
b2=$(sg_modes -p 0x08 "$SD" 2>/dev/null | awk '/Caching/ {c = 1} c && $1 == "00" {print $4; exit}')
[ -n "$b2" ] && [ $((0x$b2 & 4)) = 4 ] || { sg_modes -p 0x08 "$SD"; fail "caching page WCE != 1 after restart (byte 2 = ${b2:-?})"; }
echo "write through" > "$CT" || fail "MODE SELECT WCE=0"
wait_content "$WC" 0 || fail "configfs emulate_write_cache is $(cat "$WC") 10 s after MODE SELECT WCE=0"
verified "MODE SELECT WCE=1 (sd cache_type) saved in configfs, still write back after a daemon restart; WCE=0 saved too"

# ---- a device with 4 KiB logical blocks (hw_block_size=4096): the volume is made with them
SD4=$(lun_create user_1 lun4k $((32 << 20)) thin/p1/vol4k 1 hw_block_size=4096) || { diag; fail "LUN with hw_block_size=4096"; }
[ "$(cat "/sys/block/${SD4#/dev/}/queue/logical_block_size")" = 4096 ] || fail "logical block size $(cat "/sys/block/${SD4#/dev/}/queue/logical_block_size")"
sg_readcap -l "$SD4" > /tmp/rc4.txt 2>&1 || { cat /tmp/rc4.txt; fail "sg_readcap -l (4k)"; }
grep -qE 'Logical block length=4096 bytes' /tmp/rc4.txt || { cat /tmp/rc4.txt; fail "READ CAPACITY(16): 4k block length"; }
grep -qE "Last (LBA|logical block address)=$((32 * 256 - 1)) " /tmp/rc4.txt || { cat /tmp/rc4.txt; fail "READ CAPACITY(16): 4k last LBA"; }
dd if=/tmp/pat of="$SD4" bs=1M seek=3 oflag=direct 2>/dev/null || fail "dd write (4k)"
[ "$(dd if="$SD4" bs=1M skip=3 count=8 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "readback (4k)"
verified "hw_block_size=4096: $SD4 has 4096-byte logical blocks (READ CAPACITY 16: last LBA $((32 * 256 - 1))), 8 MiB read back"
lun_remove user_1 lun4k 1 || { diag; fail "4k LUN removal"; }

# ---- a device at the kernel's default attributes (no hw_max_sectors: 128 sectors): the limits
# tcmud advertises are the device's (configfs hw_max_sectors), not its own 32 MiB
SDD=$(LUN_KERNEL_DEFAULTS=1 lun_create user_1 lundef $((32 << 20)) thin/p1/voldef 1) || { diag; fail "LUN at default attributes"; }
HWMS=$(cat "$CFG/core/user_1/lundef/attrib/hw_max_sectors")
[ "$HWMS" = 128 ] || fail "kernel default hw_max_sectors is $HWMS, not 128"
sg_vpd -p bl "$SDD" > /tmp/vpdb0d.txt 2>&1 || { cat /tmp/vpdb0d.txt; fail "sg_vpd -p bl (default attrs)"; }
cat /tmp/vpdb0d.txt
mtld=$(sed -n 's/.*Maximum transfer length: *\([0-9]*\).*/\1/p' /tmp/vpdb0d.txt)
otld=$(sed -n 's/.*Optimal transfer length: *\([0-9]*\).*/\1/p' /tmp/vpdb0d.txt)
[ "$mtld" = 128 ] || fail "VPD b0 at default attributes: maximum transfer length ${mtld:-?}, want 128 (hw_max_sectors)"
[ -n "$otld" ] && [ "$otld" -le 128 ] || fail "VPD b0 at default attributes: optimal transfer length ${otld:-?} > 128"
# MAXIMUM WRITE SAME LENGTH is capped by the device's attrib/max_write_same_len (when non-zero)
MWSL=$(cat "$CFG/core/user_1/lundef/attrib/max_write_same_len" 2>/dev/null || echo 0)
mwsd=$(sed -n 's/.*Maximum write same length: *\(0x[0-9a-fA-F]*\|[0-9]*\).*/\1/p' /tmp/vpdb0d.txt)
[ -n "$mwsd" ] || fail "VPD b0 at default attributes: no maximum write same length"
[ "$MWSL" = 0 ] || [ $((mwsd)) -le "$MWSL" ] || fail "VPD b0 maximum write same length $mwsd > attrib/max_write_same_len $MWSL"
# READ(10) of 128 blocks (64 KiB) is served; so is 129 (more than advertised, within what the
# ring carries: served, as the kernel's own backstores serve it)
sg_raw -r 65536 -o /tmp/r128.bin "$SDD" 28 00 00 00 00 00 00 00 80 00 > /tmp/r128.txt 2>&1 ||
    { cat /tmp/r128.txt; fail "READ(10) of 128 blocks at default attributes"; }
sg_raw -r 66048 -o /tmp/r129.bin "$SDD" 28 00 00 00 00 00 00 00 81 00 > /tmp/r129.txt 2>&1 ||
    { cat /tmp/r129.txt; fail "READ(10) of 129 blocks at default attributes"; }
make_pattern /tmp/patd 4
dd if=/tmp/patd of="$SDD" bs=1M oflag=direct 2>/dev/null || fail "dd write (default attrs)"
[ "$(dd if="$SDD" bs=1M count=4 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/patd)" ] || fail "readback (default attrs)"
verified "default attributes (hw_max_sectors 128): VPD b0 maximum transfer length $mtld, optimal $otld, maximum write same length $((mwsd)) (attrib/max_write_same_len $MWSL); READ(10) of 128 and 129 blocks GOOD; 4 MiB dd read back"
lun_remove user_1 lundef 1 || { diag; fail "default-attrs LUN removal"; }
lun_remove user_1 lun0 0 || { diag; fail "LUN removal"; }
loop_teardown
tcmud_stop
"$TCMUD" volume list /tmp/pools/p1 --json > /tmp/vols.json 2>&1 || { cat /tmp/vols.json; fail "tcmud volume list"; }
cat /tmp/vols.json; echo
grep -q '"vol1"' /tmp/vols.json || fail "volume vol1 was not auto-created"
verified "volume vol1 auto-created in pool p1 (tcmud volume list)"
tr -d ' \n' < /tmp/vols.json | tr '{' '\n' | grep '"name":"vol4k"' | grep -q '"block_size":4096' || fail "vol4k was not created with 4096-byte blocks"
verified "volume vol4k auto-created with 4096-byte blocks"
exit 0
