#!/bin/bash
# power-cut.sh -- real power cuts: the whole QEMU process is SIGKILLed at a random moment
# while tcmud serves thin LUNs from a pool on an ext4 file system on a virtio disk of the
# guest; the next boot on the same disk image checks that the pool opens, `tcmud pool check`
# is clean, every write acknowledged before the last completed flush reads back exactly, and
# no volume shows another volume's, a deleted volume's or another block's data.
#
# Usage: tests/vm/power-cut.sh [--cuts N] [--seed S] [--no-build] [--tcmud BIN] [--verbose]
#                              [--keep]
#   --cuts N      power cuts (default 5; N+1 boots: each boot verifies the previous cut, then
#                 works until the next one; the last boot only verifies)
#   --seed S      seed of the plan (which boots start a new pool, when to cut) and of the
#                 guest's workload (default: the current time; printed, to replay a run)
#   --no-build    use --tcmud or target/vm-bin/tcmud as it is
#   --tcmud BIN   the daemon binary (default: `cargo build --release -p tcmud`)
#   --verbose     echo the guest consoles
#   --keep        keep the disk image and the journal even when every cut passed
#   --control K   negative control, the run must FAIL (which shows the test sees the damage):
#                 tcmud runs with fsync/fdatasync/sync_file_range made no-ops (K=nosync: pools
#                 end up unopenable) or with its pool's data file never synced (K=nodatasync:
#                 the metadata stays durable, acknowledged writes are lost), by LD_PRELOAD of
#                 tools/nosync.rs; K=sledflush: the pool as before its commits were made durable
#                 (data file synced, sled's flush = sync_file_range alone, no other fsync)
#
# Per boot the host writes the plan (/host/plan in the guest) and watches the journal the
# guest appends to over virtio-9p (tests/vm/tools/pcw.rs): the cut is the SIGKILL of QEMU
# (by its pid) once the journal shows the boot's trigger: T acknowledged flushes (then a
# random 0-250 ms more), the J-th catalog operation under way, or E journal lines after a new
# pool was created (a cut within a second of `tcmud pool create`); in about one boot in eight
# 0-3 s after the boot started, during the recovery of the previous cut (e2fsck, mount, pool
# check, tcmud opening the pool: the next boot verifies both cuts). Nothing waits a fixed time.
# In about half the boots (never those cut right after a pool's creation) the guest runs
# `sync` once its pool is ready ("settle"): as if the pool had been open long enough for a
# kernel's writeback (the guest's own is off), so those cuts test the writes and catalog
# operations that follow rather than the pool's creation.
#
# The disk is a raw sparse image attached with cache=none: the cut loses the guest's page
# cache and any request QEMU had not yet written; what the guest flushed is in the host file.
# The guest kernel writes nothing back by itself (guest/power-cut.sh): only tcmud's syncs count.
#
# Prints one line per cut and "power-cut: N cuts, L lost, X leaked, U unopenable, ..."; the
# PC-BAD lines of the guest name each bad block (volume, block, expected and found record).
# Exit status: 0 if every cut verified clean, 1 otherwise, 2 on a setup error.
# Logs: target/vm-logs/power-cut-<timestamp>/ (TCMUD_VM_LOGS overrides): boot-N.log consoles,
# journal, plan, disk.img (deleted after a clean run unless --keep).
set -uo pipefail
me=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$me/../.." && pwd)

CUTS=5 SEED="" BUILD=1 TCMUD="" VERBOSE=0 KEEP=0 CONTROL=""
while [ $# -gt 0 ]; do
    case $1 in
        --cuts) CUTS=$2; shift 2;;
        --seed) SEED=$2; shift 2;;
        --no-build) BUILD=0; shift;;
        --tcmud) TCMUD=$(readlink -f "$2"); shift 2;;
        --verbose) VERBOSE=1; shift;;
        --keep) KEEP=1; shift;;
        --control) CONTROL=$2; shift 2
                   case $CONTROL in nosync|nodatasync|sledflush) ;; *) echo "--control nosync|nodatasync|sledflush" >&2; exit 2;; esac;;
        -h|--help) sed -n '2,40p' "$0"; exit 0;;
        *) echo "unknown argument $1" >&2; exit 2;;
    esac
done
SEED=${SEED:-$(date +%s)}
RANDOM=$SEED
T0=$(date +%s)
LOGS=${TCMUD_VM_LOGS:-$repo/target/vm-logs/power-cut-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$LOGS/share" "$LOGS/mods"
LOGS=$(cd "$LOGS" && pwd)
SHARE=$LOGS/share
J=$SHARE/journal
DISK=$LOGS/disk.img
echo "== power-cut: $CUTS cuts, seed $SEED, logs in $LOGS"
[ -n "$CONTROL" ] && echo "== NEGATIVE CONTROL (--control $CONTROL): expected to fail"

# ---------------------------------------------------------------- binaries
BIN=$repo/target/vm-bin
if [ -z "$TCMUD" ]; then
    if [ "$BUILD" = 1 ]; then
        echo "== cargo build --release -p tcmud"
        mkdir -p "$BIN"
        if ! (cd "$repo" && cargo build --release -p tcmud) > "$LOGS/cargo-build.log" 2>&1; then
            tail -n 30 "$LOGS/cargo-build.log"; echo "setup error: cargo build failed"; exit 2
        fi
        strip --strip-debug -o "$BIN/tcmud" "$repo/target/release/tcmud" 2>/dev/null ||
            cp -f "$repo/target/release/tcmud" "$BIN/tcmud"
    fi
    TCMUD=$BIN/tcmud
fi
[ -x "$TCMUD" ] || { echo "setup error: no tcmud binary at $TCMUD"; exit 2; }
# Everything the boots use is copied first: editing the tree during a long run changes nothing.
tdir=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-pc-bin.XXXXXX")
trap 'rm -rf "$tdir"' EXIT
cp "$TCMUD" "$tdir/tcmud"
cp "$me/guest/power-cut.sh" "$tdir/power-cut.sh"
# the guest tool: one std-only file, built with rustc; its own tests run first (they show
# that the verifier tells lost, leaked, corrupt and torn blocks apart)
echo "== rustc tests/vm/tools/pcw.rs (+ its tests)"
if ! { rustc --edition 2021 -O -o "$tdir/pcw" "$me/tools/pcw.rs" &&
       rustc --edition 2021 --test -o "$tdir/pcw-test" "$me/tools/pcw.rs" &&
       "$tdir/pcw-test" -q; } > "$LOGS/pcw-build.log" 2>&1; then
    cat "$LOGS/pcw-build.log"; echo "setup error: building or testing pcw failed"; exit 2
fi
PCW=$tdir/pcw
extra=(-x "$LOGS/mods/virtio_blk.ko")
NOSYNC=0
if [ -n "$CONTROL" ]; then
    NOSYNC=1 cfg=()
    [ "$CONTROL" = nodatasync ] && cfg=(--cfg data_only)
    [ "$CONTROL" = sledflush ] && cfg=(--cfg sled_flush)
    rustc --edition 2021 -O --crate-type cdylib "${cfg[@]}" --check-cfg 'cfg(data_only, sled_flush)' \
        -o "$tdir/libnosync.so" "$me/tools/nosync.rs" ||
        { echo "setup error: building libnosync.so failed"; exit 2; }
    extra+=(-x "$tdir/libnosync.so")
fi

# ---------------------------------------------------------------- guest image, virtio_blk
echo "== preparing the guest image"
warm=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-vm-warm.XXXXXX")
if ! "$me/build-initramfs.sh" -o "$warm" > "$LOGS/prepare.log" 2>&1; then
    tail -n 30 "$LOGS/prepare.log"; rm -rf "$warm"; echo "setup error: could not build the guest image"; exit 2
fi
rm -rf "$warm"
# The base image has no virtio_blk (the scenarios need no disk): it travels in the per-run
# segment, so the shared cached segments stay as they are. Its dependencies (virtio,
# virtio_ring) are in the base image for virtio-9p.
(
    . "$me/lib.sh"
    kernel_prepare
    m=$(kmod_closure virtio_blk | grep '/virtio_blk\.ko') || die "virtio_blk not in modules.dep"
    case $m in
        *.ko)     cp "$KDIR/lib/modules/$KVER/$m" "$LOGS/mods/virtio_blk.ko" ;;
        *.ko.xz)  xz -dc "$KDIR/lib/modules/$KVER/$m" > "$LOGS/mods/virtio_blk.ko" ;;
        *.ko.zst) zstd -qdc "$KDIR/lib/modules/$KVER/$m" > "$LOGS/mods/virtio_blk.ko" ;;
        *.ko.gz)  gzip -dc "$KDIR/lib/modules/$KVER/$m" > "$LOGS/mods/virtio_blk.ko" ;;
    esac
) || { echo "setup error: virtio_blk module"; exit 2; }

rm -f "$DISK" "$J"
truncate -s 1G "$DISK"
: > "$J"

# ---------------------------------------------------------------- boots
GTMO=900                      # guest timeout of one boot (guest seconds)
lines() { wc -l < "$J"; }
# after_work N -> the journal lines after "WORK-START N"
after_work() { awk -v b="$1" 'on {print} $1 == "WORK-START" && $2 == b {on = 1}' "$J"; }

tot_lost=0 tot_leaked=0 tot_corrupt=0 unopenable=0 dirty=0 errors=0 cuts_done=0 verified_cuts=0
interrupted=0
summary=()
boot=0
while [ $boot -le "$CUTS" ]; do
    boot=$((boot + 1))
    last=0; [ $boot -eq $((CUTS + 1)) ] && last=1
    mkfs=0; [ $boot -eq 1 ] && mkfs=1
    fresh=0; { [ $boot -eq 1 ] || [ $((RANDOM % 4)) = 0 ]; } && fresh=1
    trig="" tval=0
    if [ $last = 0 ]; then
        if [ $boot -gt 1 ] && [ $((RANDOM % 8)) = 0 ]; then trig=boot; tval=$((RANDOM % 3000))
        elif [ $fresh = 1 ] && [ $((RANDOM % 2)) = 0 ]; then trig=pool; tval=$((RANDOM % 3))
        elif [ $((RANDOM % 4)) = 0 ]; then trig=op; tval=$((1 + RANDOM % 3))
        else trig=flushes; tval=$((1 + RANDOM % 60)); fi
    fi
    # settle=1: the guest syncs once its pool is ready (a pool that has been around for a
    # while); never before a cut meant for the pool's creation
    settle=$((RANDOM % 2)); [ "$trig" = pool ] && settle=0
    jitter=$((RANDOM % 250))
    printf 'boot=%s mkfs=%s fresh=%s last=%s settle=%s nosync=%s seed=%s\n' \
        $boot $mkfs $fresh $last $settle $NOSYNC $((SEED + boot)) > "$SHARE/plan"
    cp "$SHARE/plan" "$LOGS/plan-$boot"
    log=$LOGS/boot-$boot.log
    from=$(lines)
    desc="fresh=$fresh settle=$settle trigger=${trig:-none}${trig:+ $tval}"
    echo "== boot $boot ($desc)"
    args=(--timeout "$GTMO" --log "$log" --share "$SHARE" --disk "$DISK" --pidfile "$LOGS/qemu.pid"
          -b "$tdir/tcmud" -b "$PCW" "${extra[@]}")
    [ "$VERBOSE" = 1 ] || args+=(--quiet)
    rm -f "$LOGS/qemu.pid"
    t0=$(date +%s)
    "$me/run-vm.sh" "${args[@]}" "$tdir/power-cut.sh" > "$LOGS/boot-$boot.host.log" 2>&1 &
    vm=$!
    cut=0 hung=0
    if [ $last = 0 ]; then
        # wait for the trigger in the journal (or the VM ending on its own: an error; or no
        # journal line for 10 minutes: a hang, QEMU is killed and the run stops)
        seen=-1 since=$(date +%s)
        while kill -0 $vm 2>/dev/null; do
            now=$(lines)
            if [ "$now" != "$seen" ]; then seen=$now since=$(date +%s)
            elif [ $(( $(date +%s) - since )) -gt 600 ]; then
                hung=1; [ -s "$LOGS/qemu.pid" ] && kill -KILL "$(cat "$LOGS/qemu.pid")" 2>/dev/null
                break
            fi
            w=$(after_work $boot)
            case $trig in
                boot) if grep -q "^BOOT $boot\$" <(tail -n +$((from + 1)) "$J"); then
                          # 0-3 s into the recovery: e2fsck, mount, pool check, opening the pool
                          sleep "$((tval / 1000)).$(printf '%03d' $((tval % 1000)))"; n=1; tval=0
                      else n=-1; fi;;
                flushes) n=$(grep -c '^F ' <<<"$w");;
                op) n=$(grep -c '^OP [0-9]* BEGIN' <<<"$w");;
                pool) n=$(awk 'on {n++} !on && /^POOL [^ ]* DONE/ {on = 1} END {print on ? n + 0 : -1}' <<<"$w");;
            esac
            if [ "$n" -ge "$tval" ]; then
                [ $trig = flushes ] && sleep "0.$(printf '%03d' $jitter)"   # a random moment after it
                if [ -s "$LOGS/qemu.pid" ] && kill -KILL "$(cat "$LOGS/qemu.pid")" 2>/dev/null; then cut=1; fi
                break
            fi
            sleep 0.05
        done
    fi
    wait $vm; rc=$?
    dt=$(( $(date +%s) - t0 ))
    new=$(tail -n +$((from + 1)) "$J")
    # the verification of the previous cut (every boot but the first)
    if [ $boot -gt 1 ]; then
        res=$(grep '^RESULT ' <<<"$new" | tail -n1)
        ver=$(grep '^VERIFY ' <<<"$new" | tail -n1)
        kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2" | head -n1; }
        if [ -z "$res" ] && [ "$trig" = boot ] && [ $cut = 1 ]; then
            # cut again during the recovery: the next boot verifies both cuts
            interrupted=$((interrupted + 1))
            summary+=("cut $((boot - 1)): its recovery was cut again (cut $boot), verified with it")
            echo "   cut $((boot - 1)): recovery interrupted by cut $boot; the next boot verifies both"
        elif [ -z "$res" ]; then
            errors=$((errors + 1))
            why=$(grep -a 'GUEST-FAIL' "$log" | tail -n1)
            summary+=("cut $((boot - 1)): NOT VERIFIED (boot $boot status $rc${why:+: $why}) log: $log")
            echo "   cut $((boot - 1)): NOT VERIFIED (status $rc${why:+: $why})"
            grep -a '^PC-BAD\|GUEST-FAIL' "$log" | head -n 20 | sed 's/^/   /'
        else
            verified_cuts=$((verified_cuts + 1))
            st=$(kv state "$res"); ck=$(kv check "$res"); vf=$(kv verify "$res")
            num() { local v; v=$(kv "$1" "$2"); echo "${v:-0}"; }
            lo=$(( $(num lost "$ver") + $(num lost_vols "$ver") ))
            lk=$(( $(num leaked "$ver") + $(num extra_vols "$ver") ))
            co=$(num corrupt "$ver")
            tot_lost=$((tot_lost + lo)); tot_leaked=$((tot_leaked + lk)); tot_corrupt=$((tot_corrupt + co))
            [ "$st" = unopenable ] && unopenable=$((unopenable + 1))
            [ "$ck" = dirty ] && dirty=$((dirty + 1))
            line="cut $((boot - 1)): pool $(kv pool "$res") $st, check $ck, verify $vf${ver:+ (${ver#VERIFY })}"
            summary+=("$line")
            echo "   $line"
            if [ "$st" != ok ] && [ "$st" != unacked-gone ] || [ "$ck" = dirty ] || [ "$vf" = fail ]; then
                grep -a '^PC-BAD\|^PC: check:' "$log" | head -n 40 | sed 's/^/   /'
            fi
        fi
    fi
    if [ $last = 0 ]; then
        if [ $cut = 1 ]; then
            cuts_done=$((cuts_done + 1))
            at=$(tail -n1 "$J")
            echo "   cut $boot: QEMU killed after ${dt}s ($desc), journal's last line: $at"
        else
            errors=$((errors + 1))
            why=$(grep -a 'GUEST-FAIL' "$log" | tail -n1)
            [ $hung = 1 ] && why="no journal line for 600 s, QEMU killed${why:+; $why}"
            echo "   boot $boot ended (status $rc) before its cut${why:+: $why}; log: $log"
            grep -a 'GUEST-FAIL\|PC-BAD' "$log" | head -n 20 | sed 's/^/   /'
            summary+=("boot $boot: ended before its cut (status $rc${why:+: $why})")
            tail -n 30 "$log" | sed 's/^/   | /'
            if [ -s "$SHARE/stall-$boot.txt" ]; then
                # what the guest saw stuck (guest/power-cut.sh: stall_watch)
                cp "$SHARE/stall-$boot.txt" "$LOGS/"
                echo "   stall diagnostics of the guest: $LOGS/stall-$boot.txt"
            fi
            break
        fi
    elif [ "$rc" != 0 ]; then
        errors=$((errors + 1))
        echo "   last boot: status $rc; log: $log"
    fi
done

echo "== summary ($(( $(date +%s) - T0 ))s, seed $SEED, logs in $LOGS)"
printf '%s\n' "${summary[@]}"
again=""; [ $interrupted = 0 ] || again=" (+$interrupted cut again during their recovery)"
echo "power-cut: $cuts_done cuts, $verified_cuts verified$again: $tot_lost lost, $tot_leaked leaked, $tot_corrupt corrupt, $unopenable unopenable, $dirty check-dirty, $errors errors"
ok=0
[ $((tot_lost + tot_leaked + tot_corrupt + unopenable + dirty + errors)) = 0 ] && [ $((verified_cuts + interrupted)) = "$CUTS" ] && ok=1
if [ $ok = 1 ] && [ $KEEP = 0 ]; then rm -f "$DISK"; fi
[ $ok = 1 ]
