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
# Tests that need a logical unit with other properties than vol1 run against one of their own,
# exported beside it (their results are appended to cu.out, each once):
#   - LBPPB tests (WriteSame10/16.UnmapUnaligned, .InvalidDataOutSize,
#     CompareAndWrite.InvalidDataOutSize) on vol2, dev_config thin/p1/vol2;lbppbe=3 (512-byte
#     logical blocks on 4 KiB physical ones): they skip on a LU with one block per physical one;
#   - ReadOnly.ReadOnlySBC on vol3, dev_config thin/p1/vol3;ro (a write-protected LU);
#   - Sanitize.Reservations on vol4 (iSCSI only): its second session takes a RESERVE(6) and
#     is dropped without a logout; LIO (which answers RESERVE and PERSISTENT RESERVE IN
#     itself) keeps the reservation, and every later test of the LU would get RESERVATION
#     CONFLICT from the kernel;
#   - Sanitize.Reset (iSCSI only: over SG_IO it skips itself) on vbig, a thin volume of
#     sanitize_mb MiB (default 4096) in pool p2 on the virtio disk /dev/vda (ext4): the test
#     sends a SANITIZE OVERWRITE of the whole LU, sleeps 3 s, resets and reconnects, and
#     expects the overwrite still running; the harness's 64 MiB volume is overwritten in well
#     under a second, as a small real disk would be.
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

# ---- the selection, expanded into test names, split by the LU each test needs
# expand PATTERN_FILE -> the names of iscsi-test-cu -l (FAMILY.SUITE.TEST) that a pattern
# (FAMILY[.SUITE[.TEST]], each component an fnmatch glob of * and ?) selects
iscsi-test-cu -l > /tmp/all-tests.txt 2>&1
cp /tmp/all-tests.txt $OUT/all-tests.txt
expand() {
    awk -F. 'NR == FNR {
        if ($0 ~ /^[[:space:]]*(#|$)/) next
        np++; n[np] = NF
        for (i = 1; i <= NF; i++) { c = $i; gsub(/\*/, ".*", c); gsub(/\?/, ".", c); p[np, i] = "^" c "$" }
        next
    }
    NF == 3 {
        for (k = 1; k <= np; k++) {
            ok = 1
            for (i = 1; i <= n[k] && i <= 3; i++) if ($i !~ p[k, i]) { ok = 0; break }
            if (ok) { print; next }
        }
    }' "$1" /tmp/all-tests.txt
}
LBPPB_TESTS='CompareAndWrite.InvalidDataOutSize WriteSame10.UnmapUnaligned WriteSame16.UnmapUnaligned WriteSame10.InvalidDataOutSize WriteSame16.InvalidDataOutSize'
RO_TESTS='ReadOnly.ReadOnlySBC'
BIG_TESTS='Sanitize.Reset'
RSV_TESTS='Sanitize.Reservations'
[ "$TRANSPORT" = sg ] && { BIG_TESTS=''; RSV_TESTS=''; }
: > /tmp/list-main.txt; : > /tmp/list-lbppb.txt; : > /tmp/list-ro.txt; : > /tmp/list-big.txt
: > /tmp/list-rsv.txt
[ -s $OUT/tests.txt ] || echo '*' > $OUT/tests.txt
expand $OUT/tests.txt > /tmp/selected.txt
while read -r t; do
    st=${t#*.}
    case " $LBPPB_TESTS " in *" $st "*) echo "$t" >> /tmp/list-lbppb.txt; continue;; esac
    case " $RO_TESTS " in *" $st "*) echo "$t" >> /tmp/list-ro.txt; continue;; esac
    case " $BIG_TESTS " in *" $st "*) echo "$t" >> /tmp/list-big.txt; continue;; esac
    case " $RSV_TESTS " in *" $st "*) echo "$t" >> /tmp/list-rsv.txt; continue;; esac
    echo "$t" >> /tmp/list-main.txt
done < /tmp/selected.txt
[ -s /tmp/selected.txt ] || fail "the test selection matches no test of iscsi-test-cu -l"
verified "selection: $(wc -l < /tmp/list-main.txt) tests on vol1, $(wc -l < /tmp/list-lbppb.txt) on vol2 (lbppbe=3), $(wc -l < /tmp/list-ro.txt) on vol3 (ro), $(wc -l < /tmp/list-rsv.txt) on vol4, $(wc -l < /tmp/list-big.txt) on vbig"

# ---- the disk of pool p2 (vbig), when a test needs it
BIG_MB=$(cat $OUT/sanitize_mb 2>/dev/null || echo 4096)
POOLS="p1:1GiB:64KiB"
if [ -s /tmp/list-big.txt ]; then
    [ -d /sys/module/virtio_blk ] || insmod /vmlab/extra/virtio_blk.ko || fail "insmod virtio_blk"
    wait_for /dev/vda 10 || fail "no /dev/vda for the Sanitize.Reset volume (run-libiscsi.sh attaches one)"
    mkfs.ext4 -q -F /dev/vda > /dev/null 2>&1 || fail "mkfs.ext4 /dev/vda"
    mkdir -p /tmp/pools/p2 && mount -t ext4 /dev/vda /tmp/pools/p2 || fail "mount /dev/vda"
    rmdir /tmp/pools/p2/lost+found 2>/dev/null
    POOLS="$POOLS p2:$((BIG_MB * 2))MiB:64KiB"
fi

# ---- tcmud + the user backstore
TCMUD_LOG_LEVEL=${TCMUD_LOG_LEVEL:-info}
# shellcheck disable=SC2086 # POOLS: one word per pool, split on purpose
tcmud_write_config $POOLS
tcmud_start
BSDIR=$CFG/core/user_1/vol1
# shellcheck disable=SC2086 # HWMS_ARG: empty or one word, split on purpose
bg_wait 30 tcmu_create user_1 vol1 $((SIZE_MB << 20)) thin/p1/vol1 \
        $HWMS_ARG hw_block_size="$BS" > /dev/null || { diag; finish; fail "user backstore thin/p1/vol1"; }
wait_served vol1
verified "tcmud serves user_1/vol1 (thin/p1/vol1, ${SIZE_MB} MiB, ${BS}-byte blocks, hw_max_sectors $(cat "$BSDIR/attrib/hw_max_sectors"))"

# extra_lu NAME MB DEV_CONFIG -- a further backstore of user_1 (same attributes as vol1)
extra_lu() {
    # shellcheck disable=SC2086 # HWMS_ARG: empty or one word, split on purpose
    bg_wait 30 tcmu_create user_1 "$1" $(($2 << 20)) "$3" $HWMS_ARG hw_block_size="$BS" > /dev/null ||
        { diag; finish; fail "user backstore $3"; }
    wait_served "$1"
    verified "tcmud serves user_1/$1 ($3, $2 MiB)"
}
[ -s /tmp/list-lbppb.txt ] && extra_lu vol2 "$SIZE_MB" "thin/p1/vol2;lbppbe=3"
[ -s /tmp/list-ro.txt ] && extra_lu vol3 "$SIZE_MB" "thin/p1/vol3;ro"
[ -s /tmp/list-rsv.txt ] && extra_lu vol4 "$SIZE_MB" "thin/p1/vol4"
[ -s /tmp/list-big.txt ] && extra_lu vbig "$BIG_MB" "thin/p2/vbig"

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

# run_cu LIST TARGET -- iscsi-test-cu over the tests named in LIST against TARGET (URL or
# /dev/sgN); its output is appended to cu.out, its status and time added to done's
CU_RC=0 CU_CS=0
: > $OUT/cu.out
run_cu() {
    [ -s "$1" ] || return 0
    t0=$(now_cs)
    # -d: destructive (write) tests allowed; -S: SANITIZE tests allowed (the volumes are
    # scratch ones)
    iscsi-test-cu -d -S -t "$1" "$2" > /tmp/cu.part 2>&1
    rc=$?
    t1=$(now_cs)
    cat /tmp/cu.part >> $OUT/cu.out
    [ $rc -gt $CU_RC ] && CU_RC=$rc
    CU_CS=$((CU_CS + t1 - t0))
    echo "$CU_RC $CU_CS" > $OUT/done
    vmsg "iscsi-test-cu ($2, $(wc -l < "$1") tests) exit status $rc after $(( (t1 - t0) / 100 )).$(( (t1 - t0) % 100 ))s"
    tail -n 12 /tmp/cu.part
}

# sg_of LUN -- the /dev/sgN of a tcm_loop LUN (created if missing)
sg_of() {
    _sd=$(ls "/sys/devices/tcm_loop_0/"*/host*/target*:0:1/*:0:1:"$1"/scsi_generic/ 2>/dev/null | head -n1)
    [ -n "$_sd" ] || return 1
    [ -c "/dev/$_sd" ] || mknod "/dev/$_sd" c 21 "${_sd#sg}" || return 1
    echo "/dev/$_sd"
}

if [ "$TRANSPORT" = sg ]; then
    # ---- iscsi-test-cu over SG_IO on the tcm_loop LUNs' sg nodes
    SG=$(sg_of 0) || { finish; fail "no sg node for $SD (is sg loaded?)"; }
    verified "iscsi-test-cu over SG_IO: $SD = $SG"
    run_cu /tmp/list-main.txt "$SG"
    for x in 1:vol2:lbppb 2:vol3:ro; do
        l=${x%%:*}; v=${x#*:}; v=${v%%:*}; k=${x##*:}
        [ -s /tmp/list-$k.txt ] || continue
        loop_attach "$CFG/core/user_1/$v" "$l" 60 > /dev/null || { diag; finish; fail "tcm_loop LUN $l ($v)"; }
        X=$(sg_of "$l") || { finish; fail "no sg node for tcm_loop LUN $l"; }
        run_cu /tmp/list-$k.txt "$X"
        bg_wait 60 loop_detach "$l" || vmsg "tcm_loop LUN $l removal failed or hung"
    done
    tcmud_alive || { finish; fail "tcmud died during the suite"; }
    bg_wait 60 loop_detach 0 || vmsg "tcm_loop LUN removal failed or hung"
    loop_teardown
    for v in vol1 vol2 vol3; do
        [ -d "$CFG/core/user_1/$v" ] || continue
        bg_wait 30 rmdir "$CFG/core/user_1/$v" || vmsg "rmdir $v failed or hung"
    done
    tcmud_stop
    finish
    exit 0
fi
bg_wait 60 loop_detach 0 || { diag; finish; fail "tcm_loop LUN removal"; }
loop_teardown

# ---- iSCSI target on 127.0.0.1:3260
mkdir -p "$TPG/lun/lun_0" || { finish; fail "mkdir $TPG"; }
ln -s "$BSDIR" "$TPG/lun/lun_0/vol1" || { finish; fail "iSCSI LUN link"; }
for x in 1:vol2 2:vol3 3:vbig 4:vol4; do
    l=${x%%:*}; v=${x#*:}
    [ -d "$CFG/core/user_1/$v" ] || continue
    mkdir -p "$TPG/lun/lun_$l" && ln -s "$CFG/core/user_1/$v" "$TPG/lun/lun_$l/$v" ||
        { finish; fail "iSCSI LUN $l ($v)"; }
done
mkdir "$TPG/np/127.0.0.1:3260" || { finish; fail "iSCSI network portal 127.0.0.1:3260"; }
echo 0 > "$TPG/attrib/authentication"
echo 1 > "$TPG/attrib/generate_node_acls"
echo 1 > "$TPG/attrib/cache_dynamic_acls"
echo 0 > "$TPG/attrib/demo_mode_write_protect"
echo 1 > "$TPG/enable" || { finish; fail "enable TPG"; }
verified "iSCSI target $IQN on 127.0.0.1:3260, LUN 0 = user_1/vol1"

# ---- iscsi-test-cu
run_cu /tmp/list-main.txt iscsi://127.0.0.1/$IQN/0
run_cu /tmp/list-lbppb.txt iscsi://127.0.0.1/$IQN/1
run_cu /tmp/list-ro.txt iscsi://127.0.0.1/$IQN/2
run_cu /tmp/list-big.txt iscsi://127.0.0.1/$IQN/3
run_cu /tmp/list-rsv.txt iscsi://127.0.0.1/$IQN/4

# ---- teardown (also checks that tcmud survived the suite)
tcmud_alive || { finish; fail "tcmud died during the suite"; }
echo 0 > "$TPG/enable"
rmdir "$TPG/np/127.0.0.1:3260"
for l in "$TPG"/lun/lun_*; do
    rm "$l"/*; rmdir "$l"
done
rmdir "$TPG"; rmdir "$CFG/iscsi/$IQN"
for v in vol1 vol2 vol3 vbig vol4; do
    [ -d "$CFG/core/user_1/$v" ] || continue
    bg_wait 30 rmdir "$CFG/core/user_1/$v" || vmsg "rmdir $v failed or hung"
done
tcmud_stop
finish
exit 0
