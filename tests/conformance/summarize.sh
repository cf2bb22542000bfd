#!/bin/sh
# summarize.sh CU_OUT -- summary of an iscsi-test-cu (CUnit verbose mode) output:
# pass/fail/skip per suite, totals, and the failures with the first libiscsi message and
# the failed assertions. libiscsi reports a skipped test as passed after a "[SKIPPED]" line;
# those count as skipped here. A test without a result line (crash, hang) is "incomplete".
# Failures in suites whose commands LIO answers itself (persistent reservations,
# RESERVE/RELEASE, REPORT LUNS; multipath; the iSCSI.* transport suites) are marked [kernel]:
# not tcmud's.
# A cleanup message after CUnit's "passed" (libiscsi's reservation check) does not change
# the verdict; such messages are listed under CLEANUP.
# Last line: "TOTAL tests=N passed=P failed=F skipped=S incomplete=I ours=O" (O: failures
# not marked [kernel]).
awk '
function kernel_owned(s) { return s ~ /^(Prin|Prout|Reserve6|ReportLuns|MultipathIO|iSCSI)/ }
function finish(res) {
    if (test == "") return
    if (!(suite in seen)) { seen[suite] = 1; order[++nsuites] = suite }
    if (res == "passed" && skipped) res = "skipped"
    count[suite, res]++; total[res]++; ntests++
    if (res == "failed" || res == "incomplete") {
        nf++
        ftag[nf] = kernel_owned(suite) ? " [kernel]" : ""
        if (!kernel_owned(suite)) ours++
        fname[nf] = suite "." test (res == "incomplete" ? " (incomplete)" : "")
        fwhy[nf] = why
    }
    test = ""; skipped = 0; why = ""; infail = 0
}
/^Suite: / { finish("incomplete"); suite = substr($0, 8); infail = 0; next }
/^  Test: / {
    finish("incomplete")
    line = substr($0, 9); test = line; sub(/ \.\.\..*/, "", test)
    rest = line; sub(/^[^ ]* \.\.\./, "", rest)
    if (rest ~ /\[SKIPPED\]/) skipped = 1
    if (rest ~ /\[FAILED\]/ && why == "") { why = rest; sub(/^ *\[FAILED\] */, "", why) }
    if (rest ~ /(^|[^]])passed +\[FAILED\]/) {
        c = rest; sub(/^.*passed +\[FAILED\] */, "", c); ncl++; cl[ncl] = suite "." test ": " c
        finish("passed")
    } else if (rest ~ /(^|[^]])passed$/) finish("passed")
    else if (rest ~ /(^|[. ])FAILED$/) { finish("failed"); infail = nf }
    next
}
test != "" && /\[SKIPPED\]/ { skipped = 1 }
test != "" && /\[FAILED\]/ && why == "" { why = $0; sub(/^ *\[FAILED\] */, "", why) }
test != "" && /(^|[. ])passed$/ { finish("passed"); next }
# the CUnit verdict, then a message of the per-test cleanup of the suite (the libiscsi PRIN
# check of leftover reservations): the verdict counts, the message is listed under CLEANUP
test != "" && /^passed +\[FAILED\]/ {
    c = $0; sub(/^passed +\[FAILED\] */, "", c); ncl++; cl[ncl] = suite "." test ": " c
    finish("passed"); next
}
test != "" && /(^|[. ])FAILED$/ { finish("failed"); infail = nf; next }
infail && /^    [0-9]+\. / { a = $0; sub(/^ +/, "", a); fwhy[infail] = fwhy[infail] (fwhy[infail] == "" ? "" : " | ") a; next }
/^Run Summary:/ { finish("incomplete"); infail = 0 }
END {
    finish("incomplete")
    printf "%-28s %5s %5s %5s\n", "suite", "pass", "fail", "skip"
    for (i = 1; i <= nsuites; i++) {
        s = order[i]
        f = count[s, "failed"] + count[s, "incomplete"]
        printf "%-28s %5d %5d %5d%s\n", s, count[s, "passed"], f, count[s, "skipped"], (f && kernel_owned(s)) ? "  [kernel]" : ""
    }
    if (nf) {
        print "FAILURES:"
        for (i = 1; i <= nf; i++) printf "  %s%s: %s\n", fname[i], ftag[i], fwhy[i]
    }
    if (ncl) {
        print "CLEANUP (messages of the suite cleanup after a test that CUnit counted as passed):"
        for (i = 1; i <= ncl; i++) printf "  %s\n", cl[i]
    }
    printf "TOTAL tests=%d passed=%d failed=%d skipped=%d incomplete=%d ours=%d\n", ntests, total["passed"], total["failed"] + total["incomplete"], total["skipped"], total["incomplete"], ours
}' "$1"
