#!/bin/bash
# run-scenarios.sh -- tcmud's real-kernel test suite: builds tcmud (release), then boots one
# QEMU/TCG guest (Debian 12's stock 6.1 kernel: target_core_user, tcm_loop, configfs) per
# scenario in tests/vm/scenarios/NN-name.sh, runs the scenario as the guest's test, and prints
# what each scenario verified, PASS/FAIL, and a final line "N passed, M failed".
#
# Usage: tests/vm/run-scenarios.sh [--no-build] [--tcmud BIN] [--tcmud-fault BIN]
#                                  [--only LIST] [--verbose]
#   --no-build         do not run cargo; use --tcmud/--tcmud-fault or target/vm-bin/ as they are
#   --tcmud BIN        the daemon binary to test (default: the release build)
#   --tcmud-fault BIN  a build with the `fault-injection` feature, for 07-inprocess-restart
#                      (default: built with `cargo build --release -p tcmud --features
#                      fault-injection`)
#   --only LIST        comma-separated scenario numbers or names (e.g. 00,03 or thin)
#   --verbose          echo the guest consoles while they run
# Environment: VMLAB_CACHE (downloads and images; default ${XDG_CACHE_HOME:-$HOME/.cache}/tcmud-vm),
#   TCMUD_VM_LOGS (console logs; default target/vm-logs/<timestamp>).
# Host needs: Debian 12 with apt (qemu-system-x86 and busybox-static are installed when
# missing, after apt-get update; kernel and guest tools are fetched with apt-get download and
# cached). Exit status: 0 if every scenario passed, 1 otherwise, 2 on a setup error.
set -uo pipefail
me=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$me/../.." && pwd)

BUILD=1 TCMUD="" TCMUD_FAULT="" ONLY="" VERBOSE=0
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) BUILD=0; shift;;
        --tcmud) TCMUD=$(readlink -f "$2"); shift 2;;
        --tcmud-fault) TCMUD_FAULT=$(readlink -f "$2"); shift 2;;
        --only) ONLY=$2; shift 2;;
        --verbose) VERBOSE=1; shift;;
        -h|--help) sed -n '2,22p' "$0"; exit 0;;
        *) echo "unknown argument $1" >&2; exit 2;;
    esac
done

T0=$(date +%s)
LOGS=${TCMUD_VM_LOGS:-$repo/target/vm-logs/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$LOGS"

# The binaries are copied to target/vm-bin/ right after each build: the two builds share
# target/release/tcmud.
BIN=$repo/target/vm-bin
build_note="" fault_note=""
# the guest gets the binary without debug info (the release profile keeps it: ~10x larger)
install_bin() { strip --strip-debug -o "$2" "$1" 2>/dev/null || cp -f "$1" "$2"; }
if [ "$BUILD" = 1 ] && { [ -z "$TCMUD" ] || [ -z "$TCMUD_FAULT" ]; }; then
    mkdir -p "$BIN"
    if [ -z "$TCMUD" ]; then
        echo "== cargo build --release -p tcmud"
        if (cd "$repo" && cargo build --release -p tcmud) > "$LOGS/cargo-build.log" 2>&1; then
            install_bin "$repo/target/release/tcmud" "$BIN/tcmud"
        else
            tail -n 30 "$LOGS/cargo-build.log"
            build_note="cargo build failed (see $LOGS/cargo-build.log)"
            echo "== $build_note"
        fi
    fi
    if [ -z "$TCMUD_FAULT" ]; then
        echo "== cargo build --release -p tcmud --features fault-injection"
        if (cd "$repo" && cargo build --release -p tcmud --features fault-injection) > "$LOGS/cargo-build-fault.log" 2>&1; then
            install_bin "$repo/target/release/tcmud" "$BIN/tcmud-fault"
        else
            tail -n 30 "$LOGS/cargo-build-fault.log"
            fault_note="fault-injection build failed (see $LOGS/cargo-build-fault.log)"
            echo "== $fault_note"
        fi
    fi
fi
TCMUD=${TCMUD:-$BIN/tcmud}
TCMUD_FAULT=${TCMUD_FAULT:-$BIN/tcmud-fault}
[ -x "$TCMUD" ] || build_note=${build_note:-"no tcmud binary at $TCMUD"}
[ -x "$TCMUD_FAULT" ] || fault_note=${fault_note:-"no fault-injection build at $TCMUD_FAULT"}
fault_dir=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-vm-bin.XXXXXX")
trap 'rm -rf "$fault_dir"' EXIT
[ -x "$TCMUD_FAULT" ] && cp "$TCMUD_FAULT" "$fault_dir/tcmud-fault"

# Warm the cache (apt installs/downloads, kernel, base/tools segments) once, outside the
# per-scenario timings; a failure here is a setup error.
echo "== preparing the guest image (cache: ${VMLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcmud-vm})"
warm=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-vm-warm.XXXXXX")
if ! "$me/build-initramfs.sh" -o "$warm" > "$LOGS/prepare.log" 2>&1; then
    tail -n 30 "$LOGS/prepare.log"; rm -rf "$warm"
    echo "setup error: could not build the guest image"; echo "0 passed, 1 failed"; exit 2
fi
rm -rf "$warm"

selected() {
    local f=$1 n; n=$(basename "$f" .sh)
    [ -z "$ONLY" ] && return 0
    local IFS=,
    for w in $ONLY; do
        case $n in "$w"-*|*-"$w"|*-"$w"-*|"$w") return 0;; esac
    done
    return 1
}

pass=0 failn=0 summary=()
for sc in "$me"/scenarios/[0-9][0-9]-*.sh; do
    selected "$sc" || continue
    name=$(basename "$sc" .sh)
    tmo=$(sed -n 's/^# timeout: *\([0-9]*\).*/\1/p' "$sc" | head -n1); tmo=${tmo:-300}
    needs=$(sed -n 's/^# needs: *\([a-z-]*\).*/\1/p' "$sc" | head -n1)
    log=$LOGS/$name.log
    echo "== $name"
    t0=$(date +%s)
    args=(--timeout "$tmo" --log "$log")
    [ "$VERBOSE" = 1 ] || args+=(--quiet)
    note=""
    case $needs in
        tcmu-runner-only) ;;
        tcmud-fault) note=$build_note; [ -n "$note" ] || note=$fault_note
                     args+=(-b "$TCMUD" -b "$fault_dir/tcmud-fault");;
        *) note=$build_note; args+=(-b "$TCMUD");;
    esac
    if [ -n "$note" ]; then
        echo "   FAIL  $name: not run: $note"; failn=$((failn + 1)); summary+=("FAIL  $name (not run: $note)")
        continue
    fi
    "$me/run-vm.sh" "${args[@]}" "$sc" > "$LOGS/$name.host.log" 2>&1
    rc=$?
    dt=$(( $(date +%s) - t0 ))
    grep -a '^VERIFIED: ' "$log" 2>/dev/null | sed 's/^VERIFIED: /   ok  /'
    if [ "$rc" = 0 ]; then
        pass=$((pass + 1)); summary+=("PASS  $name (${dt}s)")
        echo "   PASS  $name (${dt}s)"
    else
        failn=$((failn + 1))
        why=$(grep -a '^GUEST-FAIL: ' "$log" 2>/dev/null | tail -n1 | sed 's/^GUEST-FAIL: //')
        case $rc in
            124) why="host timeout (QEMU killed) ${why:+- $why}";;
            125) why="no result line (guest crash/panic?) ${why:+- $why}";;
            137) why="guest timeout (${tmo}s) ${why:+- $why}";;
            2)   why="setup error: $(grep -a 'ERROR' "$LOGS/$name.host.log" | tail -n1)";;
        esac
        summary+=("FAIL  $name (${dt}s, status $rc: ${why:-see log}) log: $log")
        echo "   FAIL  $name (${dt}s, status $rc): ${why:-see log}"
        echo "   log: $log"
    fi
done

echo "== summary ($(( $(date +%s) - T0 ))s, logs in $LOGS)"
printf '%s\n' "${summary[@]}"
echo "$pass passed, $failn failed"
[ "$failn" = 0 ]
