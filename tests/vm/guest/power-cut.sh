#!/bin/sh
# shellcheck disable=SC2154 # op, opno, cache, batches, ...: pcw next-op's fields, set by eval
# power-cut.sh (guest) -- one boot of the power-cut test (host side: tests/vm/power-cut.sh).
#
# The disk /dev/vda (virtio, a raw image on the host) holds an ext4 file system with the pool
# under /pc/pools/<pool>. The host's 9p share (/host) holds the plan of this boot (/host/plan:
# boot=N mkfs=0|1 fresh=0|1 last=0|1 settle=0|1 nosync=0|1 seed=S) and the journal (/host/journal, see
# tests/vm/tools/pcw.rs) that survives the power cut: the host SIGKILLs QEMU at a moment it
# picks from the journal.
#
# 1. verify (every boot but the first): e2fsck + mount (journal replay), `tcmud pool check`
#    (must be clean; an acknowledged pool that cannot be opened is a failure), then tcmud
#    serves every volume of the catalog and `pcw verify` reads every block of every volume
#    against the journal: every write acknowledged before the last completed flush must read
#    back exactly, and no block may show another volume's, a deleted volume's or another
#    block's record. Prints and journals RESULT.
# 2. work (all boots but the last): a new pool when the plan says so (or none is left), then
#    epochs until the cut: tcmud serves the writable volumes (write-through or write-back,
#    chosen per epoch), `pcw write` writes records in batches, each batch flushed (fsync)
#    and then journaled as acknowledged; SIGTERM; one offline catalog operation (create,
#    snapshot, clone, delete), journaled before and after.
. /vmlab/tcmud-lib.sh

J=/host/journal
MNT=/pc
MB=1048576
VOL_SIZE=4MiB
boot=0 mkfs=0 fresh=0 last=0 settle=0 nosync=0 seed=1
[ -f /host/plan ] || fail "no /host/plan (run tests/vm/power-cut.sh on the host)"
. /host/plan
note() { pcw note --journal "$J" "$@" || fail "cannot append to the journal"; }
say() { echo "PC: $*"; }
if [ "$nosync" = 1 ]; then
    # negative control: tcmud (daemon and offline CLI) with sync calls made no-ops
    printf '#!/bin/sh\nLD_PRELOAD=/vmlab/extra/libnosync.so exec /vmlab/bin/tcmud "$@"\n' > /tmp/tcmud-nosync
    chmod +x /tmp/tcmud-nosync
    TCMUD=/tmp/tcmud-nosync
    say "NEGATIVE CONTROL: tcmud runs with libnosync.so preloaded (sync calls are no-ops)"
fi

# ---------------------------------------------------------------- disk
if [ ! -d /sys/module/virtio_blk ]; then
    insmod /vmlab/extra/virtio_blk.ko || fail "insmod virtio_blk"
fi
wait_for /dev/vda 30 || fail "no /dev/vda"
note "BOOT $boot"
mkdir -p "$MNT"
# The guest kernel writes nothing back on its own (no periodic writeback, ext4 commits its
# journal every 600 s): what tcmud did not sync itself is still only in the page cache at the
# cut, however long ago it was written. The test's own steps (mkfs, mkdir, rm, settle) sync.
echo 0 > /proc/sys/vm/dirty_writeback_centisecs
echo 360000 > /proc/sys/vm/dirty_expire_centisecs
MOPT=commit=600
if [ "$mkfs" = 1 ]; then
    mkfs.ext4 -q -F /dev/vda > /tmp/mkfs.out 2>&1 || { cat /tmp/mkfs.out; fail "mkfs.ext4"; }
    mount -t ext4 -o $MOPT /dev/vda "$MNT" || fail "mount"
    mkdir -p "$MNT/pools" && sync
else
    e2fsck -fy /dev/vda > /tmp/fsck.out 2>&1; frc=$?
    say "e2fsck -fy: status $frc"
    [ $frc -lt 4 ] || { cat /tmp/fsck.out; say "WARNING: e2fsck found errors it could not fix (the guest file system, not tcmud)"; }
    mount -t ext4 -o $MOPT /dev/vda "$MNT" || fail "mount after the cut"
fi

write_conf() {
    cat > "$TCMUD_CONF" <<EOF
[daemon]
recovery = "reset"
netlink_replies = false
log_level = "info"
log_format = "text"

[[pool]]
name = "$1"
path = "$MNT/pools/$1"
chunk_size = "64KiB"
capacity = "64MiB"
low_water_pct = 90
auto_create = false
EOF
}

# serve NAME... -- start tcmud and a LUN for each volume; sets LUNARGS (--lun name=/dev/sdX ...)
#   and SERVED (the names). A volume that cannot be served is left out (pcw reports it).
serve() {
    tcmud_start
    LUNARGS="" SERVED="" _i=0
    for _v in "$@"; do
        if _sd=$(lun_create user_1 "$_v" $((4 * MB)) "thin/$POOL/$_v" $_i); then
            LUNARGS="$LUNARGS --lun $_v=$_sd"; SERVED="$SERVED $_v"
        else
            say "cannot serve $_v"; diag
        fi
        _i=$((_i + 1))
    done
}
unserve() {
    _i=0
    for _v in "$@"; do
        case " $SERVED " in *" $_v "*) lun_remove user_1 "$_v" $_i || fail "removing the LUN of $_v";; esac
        _i=$((_i + 1))
    done
    tcmud_stop
    [ "$TCMUD_RC" = 0 ] || { diag; fail "tcmud exited with status $TCMUD_RC after SIGTERM"; }
}

# stall_dump -- what a stuck boot is waiting on: tcmud's log, every tcmud and pcw thread's
#   kernel stack, the blocked tasks (sysrq w) and dmesg.
stall_dump() {
    echo "== stall at uptime $(cut -d' ' -f1 /proc/uptime): journal unchanged for 120 s"
    tail -n 200 "$TCMUD_LOG" 2>/dev/null
    for _p in $(pgrep -x tcmud) $(pgrep -x pcw); do
        for _t in /proc/"$_p"/task/*; do
            echo "-- $_t $(cat "$_t/comm" 2>/dev/null) wchan=$(cat "$_t/wchan" 2>/dev/null)"
            cat "$_t/stack" 2>/dev/null
        done
    done
    echo w > /proc/sysrq-trigger 2>/dev/null
    dmesg | tail -n 200
}
# stall_watch PID -- while PID runs, if the journal stops growing for 120 s, writes stall_dump
#   to /host/stall-<boot>.txt (on the host, where it survives the cut; diagnostics only: the
#   host decides what a hang is).
stall_watch() {
    _last=$(wc -l < "$J") _quiet=0
    while kill -0 "$1" 2>/dev/null; do
        sleep 5
        _now=$(wc -l < "$J")
        if [ "$_now" != "$_last" ]; then _last=$_now _quiet=0; continue; fi
        _quiet=$((_quiet + 5))
        [ $_quiet -lt 120 ] || { stall_dump > "/host/stall-$boot.txt" 2>&1; return 0; }
    done
}

model_pool() { pcw model --journal "$J" | sed -n 's/^POOL \([^ ]*\).*/\1/p'; }
model_vols() { pcw model --journal "$J" | sed -n "s/^VOL \([^ ]*\) ${1:-[a-z]*}\$/\1/p" | tr '\n' ' '; }

# ---------------------------------------------------------------- 1. verify
if [ "$mkfs" != 1 ]; then
    pcw model --journal "$J" | sed 's/^/PC: model: /'
    POOL=$(model_pool)
    acked=$(pcw model --journal "$J" | sed -n 's/^POOL [^ ]* \(.*\)/\1/p')
    state=none check=n/a verify=n/a
    if [ "$POOL" != none ]; then
        dir=$MNT/pools/$POOL
        "$TCMUD" pool check "$dir" > /tmp/check.out 2>&1; crc=$?
        sed 's/^/PC: check: /' /tmp/check.out
        case $crc in
            0) state=ok check=clean
               # a creation the cut interrupted that left a good pool: the pool counts as made
               [ "$acked" = acked ] || note "POOL $POOL DONE";;
            1) state=ok check=dirty;;
            *) if [ "$acked" = acked ]; then
                   state=unopenable
                   echo "PC-BAD UNOPENABLE pool $POOL: created (tcmud pool create returned) before the cut, now: $(tail -n 3 /tmp/check.out | tr '\n' ' ')"
                   ls -la "$dir" "$dir/meta" 2>&1 | sed 's/^/PC: /'
               else
                   state=unacked-gone
                   say "pool $POOL: the cut came during its creation (not acknowledged); it does not open: discarded"
                   note "POOL $POOL UNDONE"
                   rm -rf "$dir"; sync
               fi;;
        esac
        if [ "$state" = ok ]; then
            cat=$("$TCMUD" volume list "$dir" --json | sed -n 's/.*"name": *"\([^"]*\)".*/\1/p' | tr '\n' ' ')
            say "catalog of $POOL: $cat"
            write_conf "$POOL"
            # shellcheck disable=SC2086 # a list of volume names
            serve $cat
            # shellcheck disable=SC2086
            if pcw verify --journal "$J" --catalog "$cat" $LUNARGS; then verify=pass; else verify=fail; fi
            # shellcheck disable=SC2086
            unserve $cat
        fi
    fi
    res="RESULT boot=$boot pool=$POOL state=$state check=$check verify=$verify"
    echo "PC-$res"
    note "$res"
    if [ "$state" = unopenable ] || [ "$check" = dirty ] || [ "$verify" = fail ]; then
        say "verification failed: the pool is discarded, the next cut starts from a new one"
        note "POOL $POOL DISCARD"
        rm -rf "${MNT:?}/pools/$POOL"; sync
    else
        verified "boot $boot: pool $POOL ($state) check $check, every block verified ($verify)"
    fi
fi
if [ "$last" = 1 ]; then
    umount "$MNT" || fail "umount"
    exit 0
fi

# ---------------------------------------------------------------- 2. work, until the cut
# (settle=1: sync once the pool is there, see below)
note "WORK-START $boot"
POOL=$(model_pool)
if [ "$fresh" = 1 ] || [ "$POOL" = none ] || [ -z "$POOL" ]; then
    n=$(pcw model --journal "$J" | sed -n 's/^POOLS_MADE //p')
    # (journaled first: a cut before the removal leaves a directory nothing refers to)
    [ -n "$POOL" ] && [ "$POOL" != none ] && { note "POOL $POOL DISCARD"; rm -rf "${MNT:?}/pools/$POOL"; sync; }
    POOL=p$((n + 1))
    note "POOL $POOL BEGIN"
    "$TCMUD" pool create "$MNT/pools/$POOL" --chunk-size 64KiB --capacity 64MiB || fail "tcmud pool create"
    note "POOL $POOL DONE"
    say "pool $POOL created"
fi
if [ "$settle" = 1 ]; then
    # the test's own sync: as if the pool had been open long enough for a kernel to write
    # everything back (by default ~30 s), so that this boot's cut tests the writes and
    # catalog operations that follow, not the creation of the pool
    sync
    note "SETTLED"
fi
write_conf "$POOL"
dir=$MNT/pools/$POOL
epoch=0
while :; do
    epoch=$((epoch + 1))
    eval "$(pcw next-op --journal "$J" --seed "$seed" | sed -n 's/^\([a-z]*\) \(.*\)/\1="\2"/p')"
    vols=$(model_vols volume)
    if [ -n "$vols" ]; then
        # shellcheck disable=SC2086
        serve $vols
        for v in $vols; do
            sd=$(echo "$LUNARGS" | tr ' ' '\n' | sed -n "s|^$v=||p")
            [ -n "$sd" ] || fail "no LUN for $v"
            if [ "$cache" = wb ]; then
                for c in "/sys/block/${sd#/dev/}"/device/scsi_disk/*/cache_type; do
                    echo "write back" > "$c" || fail "cache_type write back"
                done
            fi
        done
        say "epoch $epoch: $batches batches to $vols (write cache: $(cat "/sys/block/${sd#/dev/}"/device/scsi_disk/*/cache_type))"
        # shellcheck disable=SC2086
        pcw write --journal "$J" --seed "$seed" --batches "$batches" $LUNARGS &
        wpid=$!
        stall_watch $wpid &
        wait $wpid || { diag; fail "pcw write"; }
        # shellcheck disable=SC2086
        unserve $vols
    fi
    # shellcheck disable=SC2154,SC2086 # the op is split into words on purpose
    set -- $op
    note "OP $opno BEGIN $op"
    case $1 in
        create) "$TCMUD" volume create "$dir" "$2" --size "$VOL_SIZE";;
        snapshot) "$TCMUD" volume snapshot "$dir" "$2" "$3";;
        clone) "$TCMUD" volume clone "$dir" "$2" "$3";;
        delete) "$TCMUD" volume delete "$dir" "$2";;
    esac > /tmp/op.out 2>&1; orc=$?
    if [ $orc != 0 ]; then cat /tmp/op.out; note "OP $opno FAILED"; fail "tcmud volume $op: status $orc"; fi
    note "OP $opno DONE"
    say "epoch $epoch: $op done"
done
