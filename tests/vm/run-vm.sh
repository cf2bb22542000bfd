#!/bin/bash
# run-vm.sh -- boot one guest of tcmud's QEMU harness and run one guest script in it
# (adapted from the project's vmlab recipe).
#
# Builds the initramfs (cached base/tools segments + per-run files), boots Debian 12's stock
# kernel under QEMU/TCG, runs the guest script as part of PID 1, powers off, and exits with
# the guest script's exit status. The guest console is echoed to stdout and saved to a log.
#
# Usage: run-vm.sh [options] GUEST_TEST
#   GUEST_TEST  busybox-sh script run in the guest as /vmlab/test.sh; it should
#               `. /vmlab/guest-lib.sh` for helpers (tcmu_create, loop_attach, ...).
# Options:
#   -b BIN         host executable -> guest /vmlab/bin/NAME (+ its libraries; repeatable)
#   -x FILE        extra host file or dir -> guest /vmlab/extra/NAME (repeatable; on $PATH)
#   -s FILE        scenario script -> guest /vmlab/scenarios/NAME (repeatable; guest/run-batch.sh)
#   --ceph         add the ceph segment to the initramfs (build-initramfs.sh --ceph; needs more
#                  --mem: the cluster's programs sit in the guest's RAM, its data too)
#   --share DIR    export host DIR read-write over virtio-9p, mounted at /host in the guest
#   --timeout S    guest test timeout (default 240, guest clock); the host kills QEMU 3*S+120 s
#                  after start (a loaded host slows the TCG guest: guest seconds > wall seconds)
#   --smp N        vCPUs (default 2, MTTCG)      --mem MB   guest RAM (default 2048)
#   --log FILE     console log (default $VMLAB_LOGDIR/console-<timestamp>-<pid>.log,
#                  VMLAB_LOGDIR defaults to $VMLAB_CACHE/logs)
#   --dmesg        dump the guest dmesg after the test
#   --quiet        do not echo the console to stdout (log file only)
#   --accel A      QEMU accelerator (default tcg; kvm did not work on the dev host)
#   --disk FILE    attach FILE (raw image) as a virtio disk (/dev/vda once the guest loads
#                  virtio_blk), cache=none: the guest sees a write-back cache and its
#                  flushes reach the host file (VMLAB_DISK_CACHE overrides the cache mode)
#   --pidfile FILE where QEMU writes its pid (default: inside the run's temporary dir)
# Environment: VMLAB_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/tcmud-vm), VMLAB_KPKG
#   (kernel package), VMLAB_APPEND (extra kernel command line), VMLAB_TEST_ARGS (args for
#   the guest test).
# Exit status: guest test status; 124 host timeout; 125 no result line (panic/crash);
#   2 build/setup error.
set -euo pipefail
me=$(cd "$(dirname "$0")" && pwd)
. "$me/lib.sh"

EXTRA=() SHARE="" TMO=240 SMP=2 MEM=2048 LOG="" DMESG=0 QUIET=0 ACCEL=tcg DISK="" PIDFILE=""
while [ $# -gt 0 ]; do
    case $1 in
        -b) EXTRA+=(-b "$2"); shift 2;;
        -x) EXTRA+=(-x "$2"); shift 2;;
        -s) EXTRA+=(-s "$2"); shift 2;;
        --ceph) EXTRA+=(--ceph); shift;;
        --share) SHARE=$(cd "$2" && pwd); shift 2;;
        --timeout) TMO=$2; shift 2;;
        --smp) SMP=$2; shift 2;;
        --mem) MEM=$2; shift 2;;
        --log) LOG=$2; shift 2;;
        --dmesg) DMESG=1; shift;;
        --quiet) QUIET=1; shift;;
        --accel) ACCEL=$2; shift 2;;
        --disk) DISK=$(readlink -f "$2"); shift 2;;
        --pidfile) PIDFILE=$(readlink -f "$2"); shift 2;;
        -h|--help) sed -n '2,36p' "$0"; exit 0;;
        -*) die "unknown option $1";;
        *) break;;
    esac
done
[ $# -eq 1 ] || { sed -n '2,36p' "$0"; exit 2; }
TEST=$1

T0=$(date +%s.%N)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-vm-run.XXXXXX")
PIDFILE=${PIDFILE:-$WORK/qemu.pid}
rm -f "$PIDFILE"
# On exit (also when this script is interrupted) stop our QEMU, if still running, by its pid.
cleanup() {
    if [ -s "$PIDFILE" ]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$me/build-initramfs.sh" -o "$WORK" -t "$TEST" ${EXTRA[@]+"${EXTRA[@]}"}
T1=$(date +%s.%N)

if [ -z "$LOG" ]; then
    LOGDIR=${VMLAB_LOGDIR:-$VMLAB_CACHE/logs}
    mkdir -p "$LOGDIR"
    LOG=$LOGDIR/console-$(date +%Y%m%d-%H%M%S)-$$.log
fi
mkdir -p "$(dirname "$LOG")"

APPEND="console=ttyS0 panic=-1 quiet vmlab.timeout=$TMO vmlab.dmesg=$DMESG ${VMLAB_APPEND:-}"
QARGS=(-accel "$ACCEL" -cpu max -smp "$SMP" -m "$MEM"
       -nodefaults -no-user-config -display none -no-reboot
       -serial stdio -pidfile "$PIDFILE"
       -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img")
[ "$ACCEL" = tcg ] && QARGS[1]="tcg,thread=multi"
if [ -n "$SHARE" ]; then
    QARGS+=(-virtfs "local,path=$SHARE,mount_tag=vmlab,security_model=none,id=vmlab")
    APPEND="$APPEND vmlab.share=1"
fi
if [ -n "$DISK" ]; then
    [ -f "$DISK" ] || die "disk image $DISK not found"
    QARGS+=(-drive "file=$DISK,format=raw,if=virtio,cache=${VMLAB_DISK_CACHE:-none}")
fi
QARGS+=(-append "$APPEND")

vlog "booting $(cat "$WORK/kver") (accel=$ACCEL smp=$SMP mem=${MEM}M), log: $LOG"
set +e
# sed -u, not tr: tr writes its output in 4 KiB blocks, so a --quiet log (a file) showed a long
# boot's progress only every 4 KiB, or not at all until the guest powered off
if [ "$QUIET" = 1 ]; then
    timeout -k 5 $((3 * TMO + 120)) qemu-system-x86_64 "${QARGS[@]}" </dev/null 2>&1 | sed -u 's/\r//g' > "$LOG"
else
    timeout -k 5 $((3 * TMO + 120)) qemu-system-x86_64 "${QARGS[@]}" </dev/null 2>&1 | sed -u 's/\r//g' | tee "$LOG"
fi
qrc=${PIPESTATUS[0]}
set -e
T2=$(date +%s.%N)

res=$(grep -a -o 'VMLAB-RESULT: rc=[0-9]*' "$LOG" | tail -n1 | sed 's/.*rc=//' || true)
tm=$(awk -v a="$T0" -v b="$T1" -v c="$T2" 'BEGIN{printf "build %.1fs, vm %.1fs, total %.1fs", b-a, c-b, c-a}')
if [ -n "$res" ]; then
    vlog "guest test exit status $res ($tm)"
    exit "$res"
elif [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    vlog "TIMEOUT: QEMU killed after $((3 * TMO + 120))s ($tm)"; exit 124
else
    vlog "no VMLAB-RESULT line (qemu rc=$qrc; kernel panic or crash?) ($tm)"; exit 125
fi
