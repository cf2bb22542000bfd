#!/bin/bash
# run-libiscsi.sh -- SCSI conformance of tcmud over the real kernel path, measured with
# libiscsi's test suite (iscsi-test-cu, Debian package libiscsi-bin 1.19).
#
# One QEMU/TCG boot of Debian 12's stock kernel (tests/vm's harness): tcmud serves a user
# backstore (thin/p1/vol1, pool on the guest tmpfs); LIO exports it through tcm_loop (sg3_utils
# checks) and through an iSCSI target on 127.0.0.1:3260 (iscsi_target_mod); iscsi-test-cu runs
# in the guest against iscsi://127.0.0.1/<iqn>/0. Prints pass/fail/skip per suite, the list
# of failures (marked [kernel] where LIO answers the command itself, not tcmud), and timings.
#
# Usage: tests/conformance/run-libiscsi.sh [--no-build] [--tcmud BIN] [--tests LIST]
#            [--quick] [--all] [--size MB] [--block-size N] [--sg] [--hw-max-sectors N|default]
#            [--sanitize-mb N] [--timeout S] [--out DIR] [--verbose]
#   --no-build       do not run cargo (use --tcmud or target/conformance-bin/tcmud)
#   --tcmud BIN      daemon binary to test (default: `cargo build --release -p tcmud`)
#   --tests LIST     comma-separated iscsi-test-cu patterns (FAMILY[.SUITE[.TEST]], fnmatch),
#                    e.g. SCSI.Read10,SCSI.Unmap.*  (default: tests/conformance/tests.txt)
#   --quick          the CI subset (tests/conformance/quick.txt; about 5 minutes in all)
#   --all            every SCSI.* suite, including the ones the default list leaves out
#   --size MB        LUN size (default 64)      --block-size N   512 (default) or 4096
#   --sg             run iscsi-test-cu over SG_IO on the tcm_loop LUN's /dev/sgN, not iSCSI
#   --hw-max-sectors N|default   the backstore's hw_max_sectors (default 1024; "default":
#                    none in the control string, the kernel's 128)
#   --sanitize-mb N  size of the LU Sanitize.Reset runs on (default 4096; a thin volume on a
#                    sparse virtio disk of N+512 MiB under --out, deleted after the run): the
#                    test expects a whole-LU OVERWRITE still running after 4 s of its own pauses
#   --timeout S      guest timeout (default 2400; 600 with --quick)
#   --out DIR        results directory (default target/conformance/<timestamp>)
#   --verbose        echo the guest console
# Environment: VMLAB_CACHE (shared with tests/vm; default ${XDG_CACHE_HOME:-$HOME/.cache}/tcmud-vm).
# Exit status: 0 when no test failed (failures marked [kernel] aside), 1 otherwise, 2 on a
# setup error (no results).
set -uo pipefail
me=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$me/../.." && pwd)
vm=$repo/tests/vm

BUILD=1 TCMUD="" TESTS="" LIST=$me/tests.txt ALL=0 SIZE=64 BSZ=512 TMO="" OUT="" VERBOSE=0
TRANSPORT=iscsi HWMS=1024 SANMB=4096
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) BUILD=0; shift;;
        --tcmud) TCMUD=$(readlink -f "$2"); shift 2;;
        --tests) TESTS=$2; shift 2;;
        --all) ALL=1; shift;;
        --quick) LIST=$me/quick.txt; shift;;
        --size) SIZE=$2; shift 2;;
        --block-size) BSZ=$2; shift 2;;
        --sg) TRANSPORT=sg; shift;;
        --hw-max-sectors) HWMS=$2; shift 2;;
        --sanitize-mb) SANMB=$2; shift 2;;
        --timeout) TMO=$2; shift 2;;
        --out) OUT=$2; shift 2;;
        --verbose) VERBOSE=1; shift;;
        -h|--help) sed -n '2,32p' "$0"; exit 0;;
        *) echo "unknown argument $1" >&2; exit 2;;
    esac
done
[ -x "$vm/run-vm.sh" ] || { echo "setup error: tests/vm harness missing ($vm/run-vm.sh)" >&2; exit 2; }

T0=$(date +%s)
OUT=${OUT:-$repo/target/conformance/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/{cu.out,done,sg3.txt,tcmud.log,dmesg.txt,tests.txt,transport,hw_max_sectors,sanitize_mb,p2.img}

# ---- the daemon
BIN=$repo/target/conformance-bin
if [ -z "$TCMUD" ]; then
    mkdir -p "$BIN"
    if [ "$BUILD" = 1 ]; then
        echo "== cargo build --release -p tcmud"
        if ! (cd "$repo" && cargo build --release -p tcmud) > "$OUT/cargo-build.log" 2>&1; then
            tail -n 30 "$OUT/cargo-build.log"; echo "setup error: cargo build failed"; exit 2
        fi
        # the guest gets the binary without debug info
        strip --strip-debug -o "$BIN/tcmud" "$repo/target/release/tcmud" 2>/dev/null ||
            cp -f "$repo/target/release/tcmud" "$BIN/tcmud"
    fi
    TCMUD=$BIN/tcmud
fi
[ -x "$TCMUD" ] || { echo "setup error: no tcmud binary at $TCMUD" >&2; exit 2; }
T1=$(date +%s)

# ---- guest extras: iscsi-test-cu (+ libiscsi7, libcunit1 via the sysroot) and the
# iscsi_target_mod module (its dependencies are all in the harness's base image; shipping it
# as an extra file keeps the shared base image, keyed by the module list, unchanged)
export VMLAB_CACHE=${VMLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcmud-vm}
prep=$( (
    set -e
    . "$vm/lib.sh"
    mkdir -p "$VMLAB_CACHE"
    exec 9>"$VMLAB_CACHE/.lock"; flock 9
    kernel_prepare
    sysroot_add libiscsi-bin libiscsi7 libcunit1 libibverbs1 librdmacm1 libnl-route-3-200 libnl-3-200
    ko=$(kmod_closure iscsi_target_mod | tail -n1)
    blk=$(kmod_closure virtio_blk | grep '/virtio_blk\.ko$')
    echo "$KDIR/lib/modules/$KVER/$ko $VMLAB_CACHE/sysroot/usr/bin/iscsi-test-cu $KDIR/lib/modules/$KVER/$blk"
) 2> "$OUT/prepare.log") || { tail -n 20 "$OUT/prepare.log"; echo "setup error: guest extras"; exit 2; }
read -r KO CU BLK <<<"$prep"
[ -f "$KO" ] && [ -x "$CU" ] && [ -f "$BLK" ] || { echo "setup error: missing $KO, $CU or $BLK" >&2; exit 2; }

# ---- test selection (a test-list file on the share; iscsi-test-cu -t FILE)
if [ -n "$TESTS" ]; then
    tr ',' '\n' <<<"$TESTS" > "$OUT/tests.txt"
elif [ "$ALL" = 1 ]; then
    echo 'SCSI.*' > "$OUT/tests.txt"
else
    grep -vE '^\s*(#|$)' "$LIST" > "$OUT/tests.txt"
fi
# SCSI.Sanitize.OverwriteReserved patches iSCSI PDUs and crashes iscsi-test-cu (SIGSEGV)
# over SG_IO, where its sibling BlockEraseReserved skips itself: leave it out there.
if [ "$TRANSPORT" = sg ]; then
    sed -i -e '/^SCSI\.Sanitize\.OverwriteReserved$/d' \
        -e 's/^SCSI\.Sanitize\(\.\*\)\{0,1\}$/SCSI.Sanitize.BlockErase*\nSCSI.Sanitize.CryptoErase*\nSCSI.Sanitize.ExitFailureMode\nSCSI.Sanitize.InvalidServiceAction\nSCSI.Sanitize.Overwrite\nSCSI.Sanitize.Readonly\nSCSI.Sanitize.Reservations\nSCSI.Sanitize.Reset/' \
        "$OUT/tests.txt"
fi
[ "$LIST" = "$me/quick.txt" ] && TMO=${TMO:-600}
TMO=${TMO:-2400}
echo "$SIZE" > "$OUT/size_mb"
echo "$BSZ" > "$OUT/block_size"
echo "$TRANSPORT" > "$OUT/transport"
echo "$HWMS" > "$OUT/hw_max_sectors"
echo "$SANMB" > "$OUT/sanitize_mb"

# ---- one boot
echo "== booting the guest (results in $OUT)"
args=(--timeout "$TMO" --log "$OUT/console.log" --share "$OUT" -b "$TCMUD" -x "$CU" -x "$KO")
[ "$VERBOSE" = 1 ] || args+=(--quiet)
# the disk of Sanitize.Reset's volume (sparse: only what the guest writes takes space)
if [ "$TRANSPORT" = iscsi ]; then
    truncate -s "$((SANMB + 512))M" "$OUT/p2.img" && args+=(--disk "$OUT/p2.img" -x "$BLK")
fi
"$vm/run-vm.sh" "${args[@]}" "$me/guest-libiscsi.sh" > "$OUT/host.log" 2>&1
vmrc=$?
rm -f "$OUT/p2.img"
T2=$(date +%s)
grep -a '^VERIFIED: ' "$OUT/console.log" 2>/dev/null | sed 's/^VERIFIED: /   ok  /'
if [ ! -s "$OUT/cu.out" ] || [ ! -s "$OUT/done" ]; then
    grep -a 'GUEST-FAIL\|VMLAB' "$OUT/console.log" 2>/dev/null | tail -n 5
    tail -n 5 "$OUT/host.log"
    echo "setup error: no iscsi-test-cu results (guest status $vmrc; console: $OUT/console.log)"
    exit 2
fi
read -r curc cucs < "$OUT/done"

# ---- summary
"$me/summarize.sh" "$OUT/cu.out" | tee "$OUT/summary.txt"
fails=$(sed -n 's/^TOTAL .* ours=\([0-9]*\).*/\1/p' "$OUT/summary.txt")
echo "== timings: build $((T1 - T0))s, boot+suite $((T2 - T1))s (iscsi-test-cu $((cucs / 100)).$((cucs % 100))s, exit $curc), total $((T2 - T0))s"
echo "== guest status $vmrc; files: $OUT/{summary.txt,cu.out,sg3.txt,tcmud.log,dmesg.txt,console.log}"
[ "$vmrc" = 0 ] || echo "WARNING: guest script status $vmrc (see $OUT/console.log)"
[ "${fails:-1}" = 0 ] && [ "$vmrc" = 0 ]
