#!/bin/bash
# run-scenarios.sh -- tcmud's real-kernel test suite: builds tcmud (release), then boots a
# QEMU/TCG guest (Debian 12's stock 6.1 kernel: target_core_user, tcm_loop, configfs) and runs
# the scenarios tests/vm/scenarios/NN-name.sh in it, each as its own script, and prints what
# each scenario verified, PASS/FAIL, and a final line "N passed, M failed".
#
# Usage: tests/vm/run-scenarios.sh [--no-build] [--tcmud BIN] [--tcmud-fault BIN] [--tcmud-rbd BIN]
#                                  [--only LIST] [--verbose] [--boot-per-scenario]
#   --no-build         do not run cargo; use --tcmud/--tcmud-fault or target/vm-bin/ as they are
#   --tcmud BIN        the daemon binary to test (default: the release build)
#   --tcmud-fault BIN  a build with the `fault-injection` feature, for 07-inprocess-restart
#                      (default: built with `cargo build --release -p tcmud --features
#                      fault-injection`)
#   --tcmud-rbd BIN    a build with the `rbd` feature, for the scenarios marked `# needs: rbd`
#                      (default: built with `cargo build --release -p tcmud --features rbd`,
#                      only when such a scenario is selected); their boot also gets the
#                      initramfs's ceph segment (a single-node cluster in the guest) and
#                      3072 MiB of RAM#   --only LIST        comma-separated scenario numbers or names (e.g. 00,03 or thin)
#   --verbose          echo the guest consoles while they run
#   --boot-per-scenario  one VM boot per scenario (default: all scenarios in one boot, each
#                      its own script and process, the kernel state reset in between by
#                      guest/run-batch.sh; scenarios after a failed reset get a new boot)
# Environment: TCMUD_RBD=0 skips the `# needs: rbd` scenarios (as tests/run-all.sh leaves the
#   rbd backstore out), VMLAB_CACHE (downloads and images; default ${XDG_CACHE_HOME:-$HOME/.cache}/tcmud-vm),
#   TCMUD_VM_LOGS (console logs; default target/vm-logs/<timestamp>).
# Host needs: Debian 12 with apt (qemu-system-x86 and busybox-static are installed when
# missing, after apt-get update; kernel and guest tools are fetched with apt-get download and
# cached). Exit status: 0 if every scenario passed, 1 otherwise, 2 on a setup error.
set -uo pipefail
me=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$me/../.." && pwd)

BUILD=1 TCMUD="" TCMUD_FAULT="" RBD_BIN="" ONLY="" VERBOSE=0 PER_BOOT=0
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) BUILD=0; shift;;
        --tcmud) TCMUD=$(readlink -f "$2"); shift 2;;
        --tcmud-fault) TCMUD_FAULT=$(readlink -f "$2"); shift 2;;
        --tcmud-rbd) RBD_BIN=$(readlink -f "$2"); shift 2;;
        --only) ONLY=$2; shift 2;;
        --verbose) VERBOSE=1; shift;;
        --boot-per-scenario) PER_BOOT=1; shift;;
        -h|--help) sed -n '2,30p' "$0"; exit 0;;
        *) echo "unknown argument $1" >&2; exit 2;;
    esac
done

T0=$(date +%s)
LOGS=${TCMUD_VM_LOGS:-$repo/target/vm-logs/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$LOGS"

selected() {
    local f=$1 n; n=$(basename "$f" .sh)
    [ -z "$ONLY" ] && return 0
    local IFS=,
    for w in $ONLY; do
        case $n in "$w"-*|*-"$w"|*-"$w"-*|"$w") return 0;; esac
    done
    return 1
}
needs_of() { sed -n 's/^# needs: *\([a-z-]*\).*/\1/p' "$1" | head -n1; }
# an `rbd` scenario selected: build (or take) the rbd daemon, boot with the ceph segment
RBD=0 rbd_skip=""
for sc in "$me"/scenarios/[0-9][0-9]-*.sh; do
    selected "$sc" && [ "$(needs_of "$sc")" = rbd ] && RBD=1
done
# Until the daemon crate declares the `rbd` feature (the RBD backstore), those scenarios are
# reported as skipped, not run; once it does, a failed build fails them.
if [ "$RBD" = 1 ] && [ -z "$RBD_BIN" ] && ! grep -q '^rbd *=' "$repo/actors/Cargo.toml"; then
    RBD=0 rbd_skip="tcmud has no rbd feature (actors/Cargo.toml)"
fi
# TCMUD_RBD=0 (tests/run-all.sh: the rbd backstore is not built, librbd-dev may be missing)
if [ "$RBD" = 1 ] && [ -z "$RBD_BIN" ] && [ "${TCMUD_RBD:-1}" = 0 ]; then
    RBD=0 rbd_skip="TCMUD_RBD=0: the rbd backstore is not built"
fi

# The binaries are copied to target/vm-bin/ right after each build: the two builds share
# target/release/tcmud.
BIN=$repo/target/vm-bin
build_note="" fault_note="" rbd_note=""
# the guest gets the binary without debug info (the release profile keeps it: ~10x larger)
install_bin() { strip --strip-debug -o "$2" "$1" 2>/dev/null || cp -f "$1" "$2"; }
if [ "$BUILD" = 1 ] && { [ -z "$TCMUD" ] || [ -z "$TCMUD_FAULT" ]; }; then
    mkdir -p "$BIN"
    if [ -z "$TCMUD" ]; then
        echo "== cargo build --release -p tcmud"
        if (cd "$repo" && cargo build --release -p tcmud && cargo build --release -p tcmud --example nl_forge) > "$LOGS/cargo-build.log" 2>&1; then
            install_bin "$repo/target/release/tcmud" "$BIN/tcmud"
            install_bin "$repo/target/release/examples/nl_forge" "$BIN/nl_forge"
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
if [ "$BUILD" = 1 ] && [ "$RBD" = 1 ] && [ -z "$RBD_BIN" ]; then
    mkdir -p "$BIN"
    echo "== cargo build --release -p tcmud --features rbd"
    if (cd "$repo" && cargo build --release -p tcmud --features rbd) > "$LOGS/cargo-build-rbd.log" 2>&1; then
        install_bin "$repo/target/release/tcmud" "$BIN/tcmud-rbd"
    else
        tail -n 30 "$LOGS/cargo-build-rbd.log"
        rbd_note="rbd build failed (see $LOGS/cargo-build-rbd.log)"
        echo "== $rbd_note"
    fi
fi
TCMUD=${TCMUD:-$BIN/tcmud}
RBD_BIN=${RBD_BIN:-$BIN/tcmud-rbd}
[ "$RBD" = 0 ] || [ -x "$RBD_BIN" ] || rbd_note=${rbd_note:-"no rbd build at $RBD_BIN"}
TCMUD_FAULT=${TCMUD_FAULT:-$BIN/tcmud-fault}
[ -x "$TCMUD" ] || build_note=${build_note:-"no tcmud binary at $TCMUD"}
[ -x "$TCMUD_FAULT" ] || fault_note=${fault_note:-"no fault-injection build at $TCMUD_FAULT"}
fault_dir=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-vm-bin.XXXXXX")
trap 'rm -rf "$fault_dir"' EXIT
[ -x "$TCMUD_FAULT" ] && cp "$TCMUD_FAULT" "$fault_dir/tcmud-fault"
[ "$RBD" = 1 ] && [ -x "$RBD_BIN" ] && cp "$RBD_BIN" "$fault_dir/tcmud-rbd"

# Warm the cache (apt installs/downloads, kernel, base/tools segments) once, outside the
# per-scenario timings; a failure here is a setup error.
echo "== preparing the guest image (cache: ${VMLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcmud-vm})"
warm=$(mktemp -d "${TMPDIR:-/tmp}/tcmud-vm-warm.XXXXXX")
cephopt=(); [ "$RBD" = 1 ] && cephopt=(--ceph)
if ! "$me/build-initramfs.sh" -o "$warm" ${cephopt[@]+"${cephopt[@]}"} > "$LOGS/prepare.log" 2>&1; then
    tail -n 30 "$LOGS/prepare.log"; rm -rf "$warm"
    echo "setup error: could not build the guest image"; echo "0 passed, 1 failed"; exit 2
fi
rm -rf "$warm"


pass=0 failn=0 skipn=0 summary=()

# record NAME RC SECS LOG -- print the scenario's VERIFIED lines and PASS/FAIL
record() {
    local name=$1 rc=$2 dt=$3 log=$4 why=""
    grep -a '^VERIFIED: ' "$log" 2>/dev/null | sed 's/^VERIFIED: /   ok  /'
    if [ "$rc" = 0 ]; then
        pass=$((pass + 1)); summary+=("PASS  $name (${dt})")
        echo "   PASS  $name (${dt})"
        return
    fi
    failn=$((failn + 1))
    why=$(grep -a '^GUEST-FAIL: ' "$log" 2>/dev/null | tail -n1 | sed 's/^GUEST-FAIL: //')
    case $rc in
        124) why="host timeout (QEMU killed) ${why:+- $why}";;
        125) why="no result line (guest crash/panic?) ${why:+- $why}";;
        137) why="guest timeout ${why:+- $why}";;
        2)   why="setup error ${why:+- $why}";;
    esac
    summary+=("FAIL  $name (${dt}, status $rc: ${why:-see log}) log: $log")
    echo "   FAIL  $name (${dt}, status $rc): ${why:-see log}"
    echo "   log: $log"
}

# the selected scenarios, and the binaries each boot needs
todo=()
for sc in "$me"/scenarios/[0-9][0-9]-*.sh; do
    selected "$sc" || continue
    name=$(basename "$sc" .sh)
    needs=$(needs_of "$sc")
    note=""
    case $needs in
        tcmu-runner-only) ;;
        # the guest image gets Debian's targetcli-fb (a cached segment of its own)
        targetcli) note=$build_note; export VMLAB_TARGETCLI=1;;
        tcmud-fault) note=$build_note; [ -n "$note" ] || note=$fault_note;;
        rbd) note=$rbd_note
             if [ -n "$rbd_skip" ]; then
                 echo "== $name"; echo "   SKIP  $name: $rbd_skip"
                 skipn=$((skipn + 1)); summary+=("SKIP  $name ($rbd_skip)"); continue
             fi;;
        *) note=$build_note;;
    esac
    if [ -n "$note" ]; then
        echo "== $name"
        echo "   FAIL  $name: not run: $note"; failn=$((failn + 1)); summary+=("FAIL  $name (not run: $note)")
        continue
    fi
    todo+=("$sc")
done
bins=()
[ -x "$TCMUD" ] && bins+=(-b "$TCMUD")
# test tools (scenario 10's forged netlink sender): next to --tcmud, else target/vm-bin
# shellcheck disable=SC2043 # a list of tools, one today
for t in nl_forge; do
    for d in "$(dirname "$TCMUD")" "$BIN"; do
        [ -x "$d/$t" ] && { bins+=(-b "$d/$t"); break; }
    done
done
[ -x "$fault_dir/tcmud-fault" ] && bins+=(-b "$fault_dir/tcmud-fault")
# tcmud's D-Bus policy (scenario 18 installs it on the guest's system bus)
bins+=(-x "$repo/dist/tcmud-dbus.conf")
[ -x "$fault_dir/tcmud-rbd" ] && bins+=(-b "$fault_dir/tcmud-rbd")
# vmopts SCENARIO... -> the run-vm.sh options of a boot running them (ceph segment, RAM)
vmopts() {
    local sc
    for sc in "$@"; do [ "$(needs_of "$sc")" = rbd ] && { echo "--ceph --mem 3072"; return; }; done
}
tmo_of() { local t; t=$(sed -n 's/^# timeout: *\([0-9]*\).*/\1/p' "$1" | head -n1); echo "${t:-300}"; }

if [ "$PER_BOOT" = 1 ]; then
    # one boot per scenario: full isolation, ~10-25 s more per scenario
    for sc in ${todo[@]+"${todo[@]}"}; do
        name=$(basename "$sc" .sh); log=$LOGS/$name.log
        echo "== $name"
        t0=$(date +%s)
        # shellcheck disable=SC2207 # vmopts prints options, split on purpose
        args=(--timeout "$(tmo_of "$sc")" --log "$log" ${bins[@]+"${bins[@]}"} $(vmopts "$sc"))
        [ "$VERBOSE" = 1 ] || args+=(--quiet)
        "$me/run-vm.sh" "${args[@]}" "$sc" > "$LOGS/$name.host.log" 2>&1
        record "$name" $? "$(( $(date +%s) - t0 ))s" "$log"
    done
else
    # batches: every remaining scenario in one boot (guest/run-batch.sh resets the kernel
    # state between them); scenarios a boot did not reach run in the next boot
    boot=0
    while [ ${#todo[@]} -gt 0 ]; do
        boot=$((boot + 1))
        blog=$LOGS/boot-$boot.log
        total=60; sargs=()
        for sc in "${todo[@]}"; do total=$((total + $(tmo_of "$sc") + 30)); sargs+=(-s "$sc"); done
        echo "== boot $boot: $(for sc in "${todo[@]}"; do basename "$sc" .sh; done | tr '\n' ' ')"
        t0=$(date +%s)
        # shellcheck disable=SC2207 # vmopts prints options, split on purpose
        args=(--timeout "$total" --log "$blog" ${bins[@]+"${bins[@]}"} $(vmopts "${todo[@]}") "${sargs[@]}")
        [ "$VERBOSE" = 1 ] || args+=(--quiet)
        "$me/run-vm.sh" "${args[@]}" "$me/guest/run-batch.sh" > "$LOGS/boot-$boot.host.log" 2>&1
        vmrc=$?
        echo "   (boot $boot: $(( $(date +%s) - t0 ))s wall, status $vmrc, console $blog)"
        left=() progressed=0
        for sc in "${todo[@]}"; do
            name=$(basename "$sc" .sh); log=$LOGS/$name.log
            # (unanchored: kernel console messages can land on the same line)
            if grep -aq "VMLAB-SCENARIO-BEGIN: $name" "$blog"; then
                progressed=1
                # this scenario's part of the console
                awk -v n="$name" 'index($0, "VMLAB-SCENARIO-BEGIN: " n) {on = 1}
                    on {print} on && index($0, "VMLAB-SCENARIO-END: " n " ") {exit}' "$blog" > "$log"
                echo "== $name"
                end=$(grep -ao "VMLAB-SCENARIO-END: $name rc=[0-9]* secs=[0-9]*" "$log" | tail -n1)
                if [ -n "$end" ]; then
                    rc=$(echo "$end" | sed 's/.* rc=\([0-9]*\).*/\1/'); dt=$(echo "$end" | sed 's/.* secs=\([0-9]*\).*/\1/')
                    record "$name" "$rc" "${dt}s guest time" "$log"
                else
                    record "$name" "$vmrc" "?" "$log"      # the boot ended inside this scenario
                fi
            else
                left+=("$sc")
            fi
        done
        if [ ${#left[@]} -gt 0 ] && [ "$progressed" = 0 ]; then
            why=$(grep -a 'VMLAB-BATCH-ABORT\|ERROR' "$blog" "$LOGS/boot-$boot.host.log" 2>/dev/null | tail -n1)
            for sc in "${left[@]}"; do
                name=$(basename "$sc" .sh)
                echo "== $name"; echo "   FAIL  $name: not run (boot $boot status $vmrc ${why:+- $why})"
                failn=$((failn + 1)); summary+=("FAIL  $name (not run: boot $boot status $vmrc) log: $blog")
            done
            left=()
        fi
        todo=(${left[@]+"${left[@]}"})
    done
fi

echo "== summary ($(( $(date +%s) - T0 ))s, logs in $LOGS)"
printf '%s\n' "${summary[@]}"
if [ "$skipn" -gt 0 ]; then echo "$pass passed, $failn failed, $skipn skipped"; else echo "$pass passed, $failn failed"; fi
[ "$failn" = 0 ]
