#!/usr/bin/env bash
# The project's test command (named in README.md, run by .ci/run):
# every cargo test in the workspace, then the real-kernel VM scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
cargo test --workspace --doc
if [ -x tests/vm/run-scenarios.sh ] && [ "${TCMUD_SKIP_VM:-0}" != 1 ]; then
    tests/vm/run-scenarios.sh
fi
