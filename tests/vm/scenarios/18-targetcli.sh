#!/bin/sh
# 18-targetcli.sh -- Debian's targetcli-fb creates tcmud LUNs through D-Bus:
#   - a real system bus (dbus-daemon --system) whose only policy for org.kernel.TCMUService1 is
#     tcmud's (dist/tcmud-dbus.conf; tcmu-runner's is moved away): tcmud owns the name;
#   - `targetcli ls /backstores` lists user:thin and user:file (GetManagedObjects);
#   - `help create` on user:thin prints tcmud's ConfigDesc;
#   - `targetcli /backstores/user:thin create name=... size=... cfgstring=p1/vol1` (CheckConfig,
#     then rtslib-fb's configfs writes) makes a LUN tcmud serves: tcm_loop, fio verify;
#   - bad cfgstrings (unknown pool, missing volume with auto_create off, bad name, file outside
#     file_roots) are refused with tcmud's CheckConfig message and leave nothing in configfs;
#   - `targetcli ... delete` removes the backstore, tcmud lets go of its uio.
# needs: targetcli
# timeout: 600
. /vmlab/tcmud-lib.sh

POLICY=/usr/share/dbus-1/system.d/tcmud.conf
RUNNER_POLICY=/etc/dbus-1/system.d/tcmu-runner.conf
cleanup() {
    [ -f /tmp/tcmu-runner.conf.aside ] && mv /tmp/tcmu-runner.conf.aside "$RUNNER_POLICY"
    rm -f "$POLICY"
}
trap cleanup EXIT

# targetcli as an administrator runs it, one command per call, no colours
tcli() { targetcli "$@" < /dev/null 2>&1 | tr -d '\033' | sed 's/\[[0-9;]*m//g'; }

# ------------------------------------------------------------- the system bus, tcmud's policy
[ -x /usr/bin/targetcli ] || fail "no targetcli in the guest image (VMLAB_TARGETCLI segment)"
mkdir -p "$(dirname "$POLICY")"
cp /vmlab/extra/tcmud-dbus.conf "$POLICY" || fail "tcmud's D-Bus policy"
[ -f "$RUNNER_POLICY" ] && mv "$RUNNER_POLICY" /tmp/tcmu-runner.conf.aside
start_dbus || fail "dbus-daemon --system did not start"
verified "system bus up with tcmud's policy only"

# ------------------------------------------------------------- tcmud: pool p1, volume vol1
tcmud_write_config p1:256MiB:64KiB
sed -i 's/^auto_create = true/auto_create = false/' "$TCMUD_CONF"
"$TCMUD" pool create /tmp/pools/p1 --capacity 256MiB > /tmp/pc.out 2>&1 || { cat /tmp/pc.out; fail "pool create"; }
tcmud_start
wait_log 0 'D-Bus: serving' 30 || { diag; fail "tcmud did not take org.kernel.TCMUService1"; }
log_grep 'D-Bus: serving'
"$TCMUD" volume create /tmp/pools/p1 vol1 --size 64MiB > /tmp/vc.out 2>&1 || { cat /tmp/vc.out; fail "volume create"; }
verified "tcmud owns org.kernel.TCMUService1; volume p1/vol1 created through the daemon"

# ------------------------------------------------------------- ls, help
tcli ls /backstores > /tmp/ls.out
cat /tmp/ls.out
grep -q 'user:thin' /tmp/ls.out && grep -q 'user:file' /tmp/ls.out ||
    { diag; fail "targetcli ls /backstores does not list user:thin and user:file"; }
verified "targetcli ls /backstores lists user:thin and user:file"
tcli /backstores/user:thin help create > /tmp/help.out
grep -q '<pool>/<volume>' /tmp/help.out && grep -q 'configured pools: p1' /tmp/help.out ||
    { cat /tmp/help.out; fail "help create does not show tcmud's ConfigDesc"; }
verified "targetcli help create shows tcmud's ConfigDesc"

# ------------------------------------------------------------- refused cfgstrings
# refused CFGSTRING EXPECTED_MESSAGE -- create must fail with tcmud's message, nothing made
refused() {
    tcli /backstores/user:thin create name=bad size=64M "cfgstring=$1" > /tmp/bad.out
    cat /tmp/bad.out
    grep -qF "cfgstring invalid: $2" /tmp/bad.out ||
        { diag; fail "cfgstring $1: targetcli did not refuse it with \"$2\""; }
    for d in "$CFG"/core/user_*/bad; do [ -e "$d" ] && fail "cfgstring $1 left $d behind"; done
    verified "cfgstring $1 refused: $2"
}
refused nopool/vol1 'no pool named "nopool"'
refused p1/novol 'volume "novol" does not exist in pool "p1" (auto_create is off'
refused 'p1/bad*name' 'malformed dev_config "thin/p1/bad*name": bad volume name'
refused 'p1/vol1;rw' 'malformed dev_config "thin/p1/vol1;rw": unknown option (known: ro, lbppbe=N)'
tcli /backstores/user:file create name=bad size=64M cfgstring=/etc/passwd > /tmp/bad.out
grep -qF 'cfgstring invalid: /etc/passwd is not under any of file_roots' /tmp/bad.out ||
    { cat /tmp/bad.out; diag; fail "file outside file_roots not refused by CheckConfig"; }
verified "user:file cfgstring /etc/passwd refused: not under file_roots"
log_grep 'D-Bus CheckConfig' | tail -n 3

# ------------------------------------------------------------- a LUN made by targetcli
tcli /backstores/user:thin create name=tcli1 size=64M cfgstring=p1/vol1 > /tmp/create.out
cat /tmp/create.out
grep -q 'Created user-backed storage object tcli1' /tmp/create.out || { diag; fail "targetcli create"; }
BS=$(ls -d "$CFG"/core/user_*/tcli1 2>/dev/null | head -n1)
[ -n "$BS" ] || fail "no configfs backstore for tcli1"
grep -q 'thin/p1/vol1' "$BS/info" || { cat "$BS/info"; fail "tcli1's dev_config is not thin/p1/vol1"; }
wait_served tcli1
verified "targetcli created $BS (dev_config thin/p1/vol1), served by tcmud"
SDX=$(loop_attach "$BS" 0 60) || { diag; fail "tcm_loop LUN for tcli1"; }
dmesg_mark
fio_run tcli "$SDX" randwrite 4k 32M
fio_run tcli-seq "$SDX" write 1M 64M
[ -z "$(ring_errors)" ] || { ring_errors; fail "ring errors during fio"; }
verified "fio randwrite 4k + write 1M with crc32c verify on $SDX ($(fio_summary tcli))"
tcli ls /backstores/user:thin > /tmp/ls2.out
grep -q 'tcli1.*p1/vol1' /tmp/ls2.out || { cat /tmp/ls2.out; fail "targetcli does not list tcli1"; }
verified "targetcli ls lists tcli1 on user:thin"

# ------------------------------------------------------------- delete through targetcli
bg_wait 60 loop_detach 0 || fail "LUN unlink"
tcli /backstores/user:thin delete tcli1 > /tmp/del.out
grep -q 'Deleted storage object tcli1' /tmp/del.out || { cat /tmp/del.out; diag; fail "targetcli delete"; }
[ -e "$BS" ] && fail "$BS still exists after delete"
n=100
# shellcheck disable=SC2010 # fd symlink targets: ls -l is what shows them
while ls -l /proc/"$TCMUD_PID"/fd 2>/dev/null | grep -q /dev/uio; do
    [ $n -le 0 ] && { diag; fail "tcmud still holds a uio after delete"; }
    sleep 0.1; n=$((n - 1))
done
verified "targetcli delete removed tcli1; tcmud released its uio"
tcmud_stop
"$TCMUD" pool check /tmp/pools/p1 > /tmp/check.out 2>&1 || { cat /tmp/check.out; fail "pool check"; }
verified "tcmud exited ($TCMUD_RC); pool check clean"
