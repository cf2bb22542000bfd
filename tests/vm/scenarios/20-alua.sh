#!/bin/sh
# 20-alua.sh -- implicit and explicit ALUA with two tcmud daemons exporting one RBD image (docs/alua.md):
# daemon A serves subtype rbda (target port group 1, relative port 1), daemon B subtype rbdb
# (group 2, port 2); both devices name image rbd/vol, each mapped as its own tcm_loop LUN
# (paths sdA, sdB). Checks: one NAA on both paths, each path's own port/group designators, TPGS
# implicit; a write through A makes group 1 active/optimized and group 2 non-optimized, seen
# from both paths (sg_rtpg); sg_stpg --optimized through B moves the lock (and the optimized
# group) to B, through A back to A; the kernel's scsi_dh_alua attached to both paths. Then the
# initiator's dm-multipath (a table like multipathd's group_by_prio: A's path group first,
# B's second, hardware handler alua, queue_if_no_path) and fio 4k randwrite with crc32c verify
# on it; daemon A (the owner) frozen and killed with SIGKILL while fio writes: dm-multipath
# fails A's path when the kernel times A's commands out (attrib/cmd_time_out), continues on B,
# whose first write waits until the dead A's lock is broken (the cluster's watch timeout);
# fio completes and verifies every block, no I/O error on the multipath device; B's path
# group 2 is then active/optimized. The image read through librbd equals the
# multipath device's content.
# Then the same two LUNs in explicit-failover mode ([daemon.alua] non_owner = "standby" and
# preferred_group = 1 in both restarted daemons, which adopt their devices): with the lock free
# both groups are standby, PREF set on group 1 only; a standby port answers TEST UNIT READY
# with NOT READY, TARGET PORT IN STANDBY STATE; the new multipath device's first I/O makes
# scsi_dh_alua send SET TARGET PORT GROUPS through A (A's group active/optimized, B's
# standby); fio with verify, daemon A killed mid-fio: the failover to B's group sends SET
# TARGET PORT GROUPS through B, which takes the lock once the dead A's watch expired; fio
# completes and verifies, group 2 active/optimized, the image equals the multipath device's
# content.
# timeout: 1200
# needs: rbd (tcmud built with --features rbd as /vmlab/bin/tcmud-rbd; the ceph segment)
. /vmlab/tcmud-lib.sh
# a dead client's watch (its exclusive lock) expires after this many seconds: below the
# devices' cmd_time_out, so B's first write is not timed out by the kernel meanwhile
CEPH_WATCH_TIMEOUT=10
. /vmlab/ceph-lib.sh

# shellcheck disable=SC2034 # read by tcmud-lib.sh
TCMUD=/vmlab/bin/tcmud-rbd
MB=1048576
SIZE_MB=64
CMD_TIMEOUT=20

for m in dm-mod dm-multipath dm-round-robin scsi_dh_alua; do
    insmod "/lib/modules/$(uname -r)/alua/$m.ko" || fail "insmod $m"
done
command -v dmsetup > /dev/null || fail "no dmsetup in the guest"

ceph_start
ceph_pool rbd
ceph_image rbd/vol $SIZE_MB
verified "single-node cluster (watch timeout ${CEPH_WATCH_TIMEOUT}s), pool rbd, image rbd/vol ${SIZE_MB} MiB"

# alua_config NAME SUBTYPE GROUP PEER -> writes /tmp/tcmud-NAME.toml
alua_config() {
    cat > "/tmp/tcmud-$1.toml" <<EOF
[daemon]
recovery = "reset"
netlink_replies = false
module_params = "shared"
dbus = false
run_dir = "/run/tcmud-$1"
log_level = "info,tcmud::backstore=debug"
log_format = "text"
[daemon.subtypes]
thin = ""
file = ""
rbd = "$2"
[daemon.alua]
group = $3
relative_port = $3
peers = [{ group = $4, relative_port = $4 }]
transition_secs = $CEPH_WATCH_TIMEOUT
EOF
}
alua_config a rbda 1 2
alua_config b rbdb 2 1

# daemon A, then daemon B (tcmud_start keeps one TCMUD_PID: kept apart here)
# shellcheck disable=SC2034 # TCMUD_CONF, TCMUD_LOG: read by tcmud-lib.sh's tcmud_start
TCMUD_CONF=/tmp/tcmud-a.toml TCMUD_LOG=/tmp/tcmud-a.log
tcmud_start; PID_A=$TCMUD_PID
# shellcheck disable=SC2034 # as above
TCMUD_CONF=/tmp/tcmud-b.toml TCMUD_LOG=/tmp/tcmud-b.log
tcmud_start; PID_B=$TCMUD_PID
LOG_A=/tmp/tcmud-a.log LOG_B=/tmp/tcmud-b.log
diag2() { TCMUD_LOG=$LOG_A diag; echo "---- tcmud B ----"; tail -n 40 "$LOG_B"; ceph_diag; }

# alua_lun HBA DEV DEV_CONFIG LUN -> /dev/sdX: lun_create with cmd_time_out set before the
# export (the kernel refuses it after)
alua_lun() {
    bg_wait 30 tcmu_create "$1" "$2" $((SIZE_MB * MB)) "$3" hw_max_sectors=1024 > /dev/null || return 1
    echo $CMD_TIMEOUT > "$CFG/core/$1/$2/attrib/cmd_time_out" || return 1
    loop_attach "$CFG/core/$1/$2" "$4" 60
}
SDA=$(alua_lun user_1 alua_a rbda/rbd/vol 0) || { diag2; fail "LUN A"; }
SDB=$(alua_lun user_2 alua_b rbdb/rbd/vol 1) || { diag2; fail "LUN B"; }
holds_uio "$PID_A" alua_a && ! holds_uio "$PID_B" alua_a || fail "alua_a not served by daemon A alone"
holds_uio "$PID_B" alua_b && ! holds_uio "$PID_A" alua_b || fail "alua_b not served by daemon B alone"
verified "daemon A serves rbda/rbd/vol as $SDA, daemon B rbdb/rbd/vol as $SDB (subtypes apart)"

# one logical unit, two ports
naa() { sg_vpd -p di -r "$1" | od -An -tx1 | tr -d ' \n' | cut -c9-48; }
[ "$(naa "$SDA")" = "$(naa "$SDB")" ] || fail "VPD 83h differs at the start (NAA + T10 id): $(naa "$SDA") vs $(naa "$SDB")"
sg_vpd -p di "$SDA" > /tmp/vpd-a.txt; sg_vpd -p di "$SDB" > /tmp/vpd-b.txt
grep -qi "Relative target port: 0x1" /tmp/vpd-a.txt && grep -qi "Target port group: 0x1" /tmp/vpd-a.txt ||
    { cat /tmp/vpd-a.txt; fail "path A: relative port / group 1 designators"; }
grep -qi "Relative target port: 0x2" /tmp/vpd-b.txt && grep -qi "Target port group: 0x2" /tmp/vpd-b.txt ||
    { cat /tmp/vpd-b.txt; fail "path B: relative port / group 2 designators"; }
sg_inq "$SDA" | grep -qi "TPGS=3" || { sg_inq "$SDA"; fail "INQUIRY TPGS is not 3 (implicit and explicit)"; }
verified "same NAA and T10 vendor id on both paths; relative port/group 1 on A, 2 on B; TPGS=3"

# state_of SD GROUP -> the asymmetric access state sg_rtpg decodes for GROUP seen through SD
state_of() {
    sg_rtpg -d "$1" 2>/dev/null | awk -v g="$2" '
        /target port group id/ { want = ($0 ~ ("id *: *0x0*" g "[ ,]")) }
        want && /asymmetric access state/ { sub(/.*state *[:=] */, ""); print; exit }'
}
# wait_state SD GROUP REGEX SECS -- poll (a condition wait) until GROUP's state matches
wait_state() {
    _n=$(($4 * 10))
    until state_of "$1" "$2" | grep -qiE "$3"; do
        [ $_n -le 0 ] && { sg_rtpg -d "$1"; return 1; }
        sleep 0.1; _n=$((_n - 1))
    done
}
make_pattern /tmp/pat 1
dd if=/tmp/pat of="$SDA" bs=1M seek=1 oflag=direct conv=fsync 2>/dev/null || fail "dd through A"
wait_state "$SDA" 1 "active/optimized" 10 || fail "group 1 not active/optimized through A after A's write"
wait_state "$SDB" 1 "active/optimized" 10 || fail "group 1 not active/optimized through B"
wait_state "$SDB" 2 "non.optimized" 10 || fail "group 2 not non-optimized through B"
verified "a write through A: group 1 active/optimized, group 2 active/non-optimized (sg_rtpg through both paths)"

# explicit ALUA: SET TARGET PORT GROUPS through B naming B's own group optimized moves the lock to
# B with no write from the initiator; then the same through A moves it back
sg_stpg --optimized "$SDB" > /tmp/stpg-b.out 2>&1 || { cat /tmp/stpg-b.out; diag2; fail "sg_stpg --optimized through B"; }
wait_state "$SDB" 2 "active/optimized" 10 || fail "group 2 not active/optimized through B after its STPG"
wait_state "$SDA" 1 "non.optimized" 10 || fail "group 1 not non-optimized through A after B's STPG"
dd if="$SDB" of=/tmp/back bs=1M skip=1 count=1 iflag=direct 2>/dev/null
cmp -s /tmp/pat /tmp/back || fail "the block A wrote changed across B's STPG"
sg_stpg --optimized "$SDA" > /tmp/stpg-a.out 2>&1 || { cat /tmp/stpg-a.out; diag2; fail "sg_stpg --optimized through A"; }
wait_state "$SDA" 1 "active/optimized" 10 || fail "group 1 not active/optimized through A after its STPG"
wait_state "$SDB" 2 "non.optimized" 10 || fail "group 2 not non-optimized through B after A's STPG"
verified "explicit ALUA: sg_stpg --optimized through B made group 2 active/optimized (A's path non-optimized), through A back to group 1; A's data intact"
for s in "$SDA" "$SDB"; do
    h=$(cat "/sys/block/${s#/dev/}/device/dh_state" 2>/dev/null)
    [ "$h" = alua ] || fail "scsi_dh_alua not attached to $s (dh_state '$h')"
done
verified "the kernel's ALUA device handler is attached to both paths"

# the initiator's multipath device: A's path group first (what multipathd's group_by_prio
# with prio alua builds from the states above), B's second
dev_of() { cat "/sys/block/${1#/dev/}/dev"; }
SECTORS=$((SIZE_MB * 2048))
# mp_create DM -- /dev/mapper/DM over both paths, A's path group first, B's second (the
# table multipathd's group_by_prio with prio alua builds: the guest has no udev for it)
mp_create() {
    dmsetup create "$1" --table "0 $SECTORS multipath 1 queue_if_no_path 1 alua 2 1 \
round-robin 0 1 1 $(dev_of "$SDA") 1000 round-robin 0 1 1 $(dev_of "$SDB") 1000" || fail "dmsetup create $1"
    dmsetup mknodes "$1" 2>/dev/null
    [ -b "/dev/mapper/$1" ] || fail "no /dev/mapper/$1"
}
# kill_a_under_fio DM OFFSET_MB SEED -- fio 4k randwrite with crc32c verify of 16 MiB at
# OFFSET_MB through /dev/mapper/DM; daemon A (the lock owner) frozen and killed once fio
# wrote through A's path; fio must complete and verify, dm-multipath end with A's path
# failed and B's active, and no I/O error reach the multipath device
kill_a_under_fio() {
    fio --name="$1" --filename="/dev/mapper/$1" --direct=1 --ioengine=libaio --iodepth=32 \
        --rw=randwrite --bs=4k --size=16M --offset=$(($2 * MB)) --verify=crc32c --verify_fatal=1 \
        --do_verify=1 --randseed="$3" --output-format=terse --terse-version=3 > "/tmp/fio-$1.out" 2>&1 &
    _fpid=$!
    wait_writes "$SDA" 64 300 $_fpid || { cat "/tmp/fio-$1.out"; fail "fio wrote nothing through path A"; }
    kill -STOP "$PID_A"
    kill -0 $_fpid 2>/dev/null || { cat "/tmp/fio-$1.out"; fail "fio ended before the kill"; }
    kill -KILL "$PID_A"; wait "$PID_A" 2>/dev/null
    _tk=$(cut -d' ' -f1 /proc/uptime)
    vmsg "killed daemon A (pid $PID_A, the lock owner) during fio on $1 at ${_tk}s"
    if ! wait $_fpid; then cat "/tmp/fio-$1.out"; dmsetup status "$1"; diag2; fail "fio on $1 failed after daemon A's death"; fi
    _te=$(cut -d' ' -f1 /proc/uptime)
    verified "$1: kill -9 of the active daemon during fio randwrite 16 MiB: fio completed and verified every block ($(awk -v a="$_tk" -v b="$_te" 'BEGIN{printf "%.0f", b-a}') s after the kill; $(fio_summary "$1"))"
    _st=$(dmsetup status "$1")
    echo "GUEST: dmsetup status after the failover: $_st"
    case $_st in *" F "*" A "*) ;; *) fail "expected path A failed and path B active: $_st";; esac
    _errs=$(dmesg_new | grep -iE 'I/O error, dev dm-|Buffer I/O error on dev dm-|critical')
    [ -z "$_errs" ] || { echo "$_errs"; fail "I/O errors on the multipath device"; }
    verified "$1: path A failed, path B active; no I/O error on the multipath device"
    dmesg_new | grep -iE 'alua|multipath' | tail -n 12
}

mp_create mpalua
MP=/dev/mapper/mpalua
[ "$(dd if=$MP bs=1M skip=1 count=1 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || fail "the multipath device does not read A's write back"
verified "dm-multipath device over both paths (alua handler, queue_if_no_path): $(dmsetup status mpalua)"
dmesg_mark
kill_a_under_fio mpalua 16 20
wait_state "$SDB" 2 "active/optimized" 30 || fail "group 2 not active/optimized through B after the failover"
verified "group 2 (daemon B) active/optimized after the failover"

# image_matches DM -- the multipath device DM read whole, daemon B stopped, equals the image
# exported through librbd
image_matches() {
    dd if="/dev/mapper/$1" of=/tmp/lun.img bs=1M iflag=direct 2>/dev/null || fail "reading the multipath device"
    dmsetup remove "$1" 2>/dev/null || true
    TCMUD_PID=$PID_B tcmud_stop
    rm -f /tmp/export.img
    timeout 120 rbd export rbd/vol /tmp/export.img > /dev/null 2>&1 || { ceph_diag; fail "rbd export"; }
    [ "$(sha /tmp/lun.img)" = "$(sha /tmp/export.img)" ] || fail "the image differs from what the multipath device read"
}
image_matches mpalua
verified "the image read through librbd equals the multipath device's $SIZE_MB MiB"

# ---- explicit failover: the groups that do not own the lock are standby ----
for n in a b; do printf 'non_owner = "standby"\npreferred_group = 1\n' >> "/tmp/tcmud-$n.toml"; done
LOG_A=/tmp/tcmud-a2.log LOG_B=/tmp/tcmud-b2.log
# shellcheck disable=SC2034 # as above
TCMUD_CONF=/tmp/tcmud-a.toml TCMUD_LOG=$LOG_A
tcmud_start; PID_A=$TCMUD_PID
# shellcheck disable=SC2034 # as above
TCMUD_CONF=/tmp/tcmud-b.toml TCMUD_LOG=$LOG_B
tcmud_start; PID_B=$TCMUD_PID
holds_uio "$PID_A" alua_a && holds_uio "$PID_B" alua_b || { diag2; fail "the restarted daemons did not adopt their devices"; }
wait_state "$SDA" 1 "standby" 30 || { diag2; fail "group 1 not standby through A with the lock free"; }
wait_state "$SDB" 2 "standby" 30 || { diag2; fail "group 2 not standby through B with the lock free"; }
wait_state "$SDB" 1 "standby" 10 || fail "group 1 not standby through B with the lock free"
verified "non_owner = standby (both daemons restarted, devices adopted): with the lock free groups 1 and 2 report standby"
# preferred_group = 1: PREF set in group 1's descriptor only, through either path
for sd in "$SDA" "$SDB"; do
    sg_rtpg -d "$sd" > /tmp/rtpg-pref.txt 2>&1 || { cat /tmp/rtpg-pref.txt; fail "sg_rtpg through $sd"; }
    grep -qiE "group id *: *0x0*1 *, *Pref=1" /tmp/rtpg-pref.txt &&
        grep -qiE "group id *: *0x0*2 *, *Pref=0" /tmp/rtpg-pref.txt ||
        { cat /tmp/rtpg-pref.txt; fail "PREF not set on group 1 alone through $sd"; }
done
verified "preferred_group = 1: sg_rtpg through both paths shows Pref=1 on group 1, Pref=0 on group 2"
if sg_turs -v "$SDB" > /tmp/tur-b.out 2>&1; then cat /tmp/tur-b.out; fail "TEST UNIT READY through standby B succeeded"; fi
grep -qi "standby" /tmp/tur-b.out || { cat /tmp/tur-b.out; fail "TEST UNIT READY through standby B: not TARGET PORT IN STANDBY STATE"; }
verified "a standby port refuses TEST UNIT READY: $(grep -i standby /tmp/tur-b.out | head -n 1 | tr -s ' ')"

mp_create mpsb
MP=/dev/mapper/mpsb
dmesg_mark
[ "$(dd if=$MP bs=1M skip=1 count=1 iflag=direct 2>/dev/null | sha)" = "$(sha /tmp/pat)" ] || { diag2; fail "the multipath device does not read A's write back"; }
wait_state "$SDA" 1 "active/optimized" 30 || { diag2; fail "group 1 not active/optimized after the multipath device's first I/O"; }
wait_state "$SDB" 2 "standby" 10 || fail "group 2 not standby through B once A owns the lock"
grep -q "exclusive lock requested for SET TARGET PORT GROUPS" "$LOG_A" || { diag2; fail "daemon A took the lock without a SET TARGET PORT GROUPS"; }
verified "the multipath device's first I/O: scsi_dh_alua's SET TARGET PORT GROUPS through A made group 1 active/optimized, group 2 stays standby"

kill_a_under_fio mpsb 32 21
wait_state "$SDB" 2 "active/optimized" 30 || fail "group 2 not active/optimized through B after the failover"
grep -q "exclusive lock requested for SET TARGET PORT GROUPS" "$LOG_B" || { diag2; fail "daemon B took the lock without a SET TARGET PORT GROUPS"; }
verified "the failover to standby group 2: scsi_dh_alua's SET TARGET PORT GROUPS through B took the lock, group 2 active/optimized; no I/O error on the multipath device"
image_matches mpsb
verified "the image read through librbd equals the multipath device's $SIZE_MB MiB (standby mode)"
exit 0
