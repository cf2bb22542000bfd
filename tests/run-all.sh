#!/usr/bin/env bash
# The project's test command (named in README.md, run by .ci/run):
# every cargo test in the workspace, the real-kernel VM scenarios, power cuts
# in the VM, then a libiscsi conformance subset over the real kernel path.
set -euo pipefail
cd "$(dirname "$0")/.."
# The RBD backstore (cargo feature `rbd`) is built and tested against a
# throw-away single-node Ceph cluster (tests/ceph/cluster.sh, Debian's
# packages, installed by tests/ceph/deps.sh). TCMUD_RBD=0 leaves it out
# (then no RBD test is built, none passes by default).
features=()
if [ "${TCMUD_RBD:-1}" != 0 ]; then
    tests/ceph/deps.sh
    ceph_dir=$(mktemp -d /tmp/tcmud-ceph.XXXXXX)
    rmdir "$ceph_dir"
    trap 'tests/ceph/cluster.sh stop "$ceph_dir"' EXIT
    tests/ceph/cluster.sh start "$ceph_dir"
    eval "$(tests/ceph/cluster.sh env "$ceph_dir")"
    features=(--features tcmud/rbd)
else
    echo "run-all.sh: TCMUD_RBD=0: the rbd backstore is not built or tested" >&2
fi
cargo test --workspace --all-targets "${features[@]}"
cargo test --workspace --doc
# Every scenario of tests/vm/scenarios/; TCMUD_VM_SCENARIOS=03,07 narrows it.
if [ -x tests/vm/run-scenarios.sh ] && [ "${TCMUD_SKIP_VM:-0}" != 1 ]; then
    tests/vm/run-scenarios.sh ${TCMUD_VM_SCENARIOS:+--only "$TCMUD_VM_SCENARIOS"}
fi
# Power cuts: QEMU SIGKILLed with the pool on a virtual disk, every
# acknowledged write read back after the next boot (TCMUD_POWERCUTS sets the
# number of cuts, TCMUD_SKIP_POWERCUT=1 skips them).
if [ -x tests/vm/power-cut.sh ] && [ "${TCMUD_SKIP_VM:-0}" != 1 ] &&
    [ "${TCMUD_SKIP_POWERCUT:-0}" != 1 ]; then
    tests/vm/power-cut.sh --cuts "${TCMUD_POWERCUTS:-5}" --no-build --tcmud target/vm-bin/tcmud
fi
# SCSI conformance over the real kernel path: libiscsi's iscsi-test-cu, the
# CI subset (tests/conformance/quick.txt), with the binary the VM tests used,
# over iSCSI and over SG_IO at default attributes.
if [ -x tests/conformance/run-libiscsi.sh ] && [ "${TCMUD_SKIP_VM:-0}" != 1 ] &&
    [ "${TCMUD_SKIP_CONFORMANCE:-0}" != 1 ]; then
    tests/conformance/run-libiscsi.sh --quick --no-build --tcmud target/vm-bin/tcmud
    # the same subset at the kernel's default attributes over SG_IO on tcm_loop
    tests/conformance/run-libiscsi.sh --quick --sg --hw-max-sectors default --no-build \
        --tcmud target/vm-bin/tcmud
fi
