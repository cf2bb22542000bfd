#!/bin/sh
# guest-libiscsi.sh -- guest half of run-libiscsi.sh (busybox sh, runs as /vmlab/test.sh).
#
# One boot: tcmud serves a user backstore (dev_config thin/p1/vol1, pool on the guest tmpfs,
# auto-created); the backstore is exported twice through LIO:
#   1. tcm_loop -> /dev/sdX: sg3_utils checks (INQUIRY, VPD b0/b2, READ CAPACITY(16),
#      REPORT SUPPORTED OPCODES), then the LUN is removed again;
#   2. an iSCSI target on 127.0.0.1:3260 (iscsi_target_mod, configfs, no auth, demo mode):
#      libiscsi's iscsi-test-cu runs the selected tests against iscsi://127.0.0.1/<iqn>/0.
# Results go to the host share (/host, 9p): cu.out (iscsi-test-cu output), sg3.txt,
# tcmud.log, dmesg.txt, and done (exit status of iscsi-test-cu).
# With transport=sg, step 2 is skipped: iscsi-test-cu runs over SG_IO against the tcm_loop
# LUN's /dev/sgN instead (the kernel path an initiator on the same host takes).
# Inputs from the share: tests.txt (one test pattern per line, iscsi-test-cu's test-list
# file), size_mb (LUN size, default 64), block_size (default 512), transport (iscsi or sg,
# default iscsi), hw_max_sectors (a number, or "default": none in the control string, the
# kernel's 128; default 1024).
# timeout: set by run-libiscsi.sh
. /vmlab/tcmud-lib.sh

OUT=/host
[ -d "$OUT" ] && touch "$OUT/.probe" 2>/dev/null || fail "no writable host share at /host"
SIZE_MB=$(cat $OUT/size_mb 2>/dev/null || echo 64)
BS=$(cat $OUT/block_size 2>/dev/null || echo 512)
TRANSPORT=$(cat $OUT/transport 2>/dev/null || echo iscsi)
HWMS=$(cat $OUT/hw_max_sectors 2>/dev/null || echo 1024)
if [ "$HWMS" = default ]; then HWMS_ARG=; else HWMS_ARG=hw_max_sectors=$HWMS; fi
IQN=iqn.2003-01.org.linux-iscsi.tcmud:conformance
TPG=$CFG/iscsi/$IQN/tpgt_1

finish() {
    cp "$TCMUD_LOG" $OUT/tcmud.log 2>/dev/null
    dmesg > $OUT/dmesg.txt 2>/dev/null
}

# ---- the iSCSI target module (not in the harness's module list: shipped as an extra file)
[ -d /sys/module/iscsi_target_mod ] || insmod /vmlab/extra/iscsi_target_mod.ko ||
    fail "insmod iscsi_target_mod"
ip link set lo up
ip addr show lo | grep -q 127.0.0.1 || ip addr add 127.0.0.1/8 dev lo
verified "iscsi_target_mod loaded, lo up ($(ip -o -4 addr show lo | awk '{print $4}'))"

# ---- tcmud + the user backstore
TCMUD_LOG_LEVEL=${TCMUD_LOG_LEVEL:-info}
tcmud_write_config p1:1GiB:64KiB
tcmud_start
BSDIR=$CFG/core/user_1/vol1
# shellcheck disable=SC2086 # HWMS_ARG: empty or one word, split on purpose
bg_wait 30 tcmu_create user_1 vol1 $((SIZE_MB << 20)) thin/p1/vol1 \
        $HWMS_ARG hw_block_size="$BS" > /dev/null || { diag; finish; fail "user backstore thin/p1/vol1"; }
wait_served vol1
verified "tcmud serves user_1/vol1 (thin/p1/vol1, ${SIZE_MB} MiB, ${BS}-byte blocks, hw_max_sectors $(cat "$BSDIR/attrib/hw_max_sectors"))"

# ---- sg3_utils over tcm_loop
sg3() {
    echo "### $*"
    "$@" 2>&1
    echo "### status $?"
}
SD=$(loop_attach "$BSDIR" 0 60) || { diag; finish; fail "tcm_loop LUN"; }
{
    sg3 sg_inq "$SD"
    sg3 sg_vpd -p 0x00 "$SD"
    sg3 sg_vpd -p 0x83 "$SD"
    sg3 sg_vpd -p 0xb0 "$SD"
    sg3 sg_vpd -p 0xb1 "$SD"
    sg3 sg_vpd -p 0xb2 "$SD"
    sg3 sg_readcap "$SD"
    sg3 sg_readcap -l "$SD"
    sg3 sg_opcodes "$SD"
    sg3 sg_opcodes --rctd "$SD"
    sg3 sg_modes -a "$SD"
    sg3 sg_luns "$SD"
    sg3 sg_rtpg "$SD"
    sg3 sg_rep_zones "$SD"
    sg3 sg_get_lba_status "$SD"
    sg3 sg_turs "$SD"
} > $OUT/sg3.txt 2>&1
verified "sg3_utils checks over tcm_loop ($SD) -> sg3.txt"

# run_cu TARGET -- iscsi-test-cu over the selected tests against TARGET (URL or /dev/sgN)
run_cu() {
    iscsi-test-cu -l > /tmp/all-tests.txt 2>&1
    cp /tmp/all-tests.txt $OUT/all-tests.txt
    t0=$(now_cs)
    # -d: destructive (write) tests allowed; -S: SANITIZE tests allowed (the volume is a
    # scratch one); test list from the host share
    if [ -s $OUT/tests.txt ]; then
        iscsi-test-cu -d -S -t $OUT/tests.txt "$1" > $OUT/cu.out 2>&1
    else
        iscsi-test-cu -d -S "$1" > $OUT/cu.out 2>&1
    fi
    rc=$?
    t1=$(now_cs)
    echo "$rc $((t1 - t0))" > $OUT/done
    vmsg "iscsi-test-cu ($1) exit status $rc after $(( (t1 - t0) / 100 )).$(( (t1 - t0) % 100 ))s"
    tail -n 12 $OUT/cu.out
}

if [ "$TRANSPORT" = sg ]; then
    # ---- iscsi-test-cu over SG_IO on the tcm_loop LUN's sg node
    SG=$(ls "/sys/block/${SD#/dev/}/device/scsi_generic/" 2>/dev/null | head -n1)
    [ -n "$SG" ] || { finish; fail "no sg node for $SD (is sg loaded?)"; }
    [ -c "/dev/$SG" ] || mknod "/dev/$SG" c 21 "${SG#sg}" || { finish; fail "mknod /dev/$SG"; }
    verified "iscsi-test-cu over SG_IO: $SD = /dev/$SG"
    run_cu "/dev/$SG"
    tcmud_alive || { finish; fail "tcmud died during the suite"; }
    bg_wait 60 loop_detach 0 || vmsg "tcm_loop LUN removal failed or hung"
    loop_teardown
    bg_wait 30 rmdir "$BSDIR" || vmsg "rmdir $BSDIR failed or hung"
    tcmud_stop
    finish
    exit 0
fi
bg_wait 60 loop_detach 0 || { diag; finish; fail "tcm_loop LUN removal"; }
loop_teardown

# ---- iSCSI target on 127.0.0.1:3260
mkdir -p "$TPG/lun/lun_0" || { finish; fail "mkdir $TPG"; }
ln -s "$BSDIR" "$TPG/lun/lun_0/vol1" || { finish; fail "iSCSI LUN link"; }
mkdir "$TPG/np/127.0.0.1:3260" || { finish; fail "iSCSI network portal 127.0.0.1:3260"; }
echo 0 > "$TPG/attrib/authentication"
echo 1 > "$TPG/attrib/generate_node_acls"
echo 1 > "$TPG/attrib/cache_dynamic_acls"
echo 0 > "$TPG/attrib/demo_mode_write_protect"
echo 1 > "$TPG/enable" || { finish; fail "enable TPG"; }
verified "iSCSI target $IQN on 127.0.0.1:3260, LUN 0 = user_1/vol1"

# ---- iscsi-test-cu
run_cu iscsi://127.0.0.1/$IQN/0

# ---- teardown (also checks that tcmud survived the suite)
tcmud_alive || { finish; fail "tcmud died during the suite"; }
echo 0 > "$TPG/enable"
rmdir "$TPG/np/127.0.0.1:3260"
rm "$TPG/lun/lun_0/vol1"; rmdir "$TPG/lun/lun_0"
rmdir "$TPG"; rmdir "$CFG/iscsi/$IQN"
bg_wait 30 rmdir "$BSDIR" || vmsg "rmdir $BSDIR failed or hung"
tcmud_stop
finish
exit 0
