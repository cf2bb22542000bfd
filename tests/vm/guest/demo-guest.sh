#!/bin/sh
# demo-guest.sh -- the guest half of tests/vm/demo.sh (busybox sh, run as /vmlab/test.sh):
# tcmud with its default configuration, a LUN made with targetcli, a filesystem, a live
# snapshot, a clone of it attached as a second LUN, mounted, its files shown. Narrated.
. /vmlab/tcmud-lib.sh

POOL=/var/lib/tcmud/pools/default
step=0
say() { step=$((step + 1)); printf '\n\033[1m==> %d. %s\033[0m\n' "$step" "$*"; }
note() { printf '    %s\n' "$*"; }
# run CMD... -- show the command as an administrator would type it, then run it
run() { printf '\033[36m# %s\033[0m\n' "$*"; "$@"; }
# tcli ARGS... -- targetcli, one command per call (what a script would do)
tcli() { printf '\033[36m# targetcli %s\033[0m\n' "$*"; targetcli "$@" < /dev/null 2>&1 | grep -v 'Could not load preferences'; }
die() { printf '\n\033[31mdemo failed: %s\033[0m\n' "$*"; diag; exit 1; }

say "A Linux kernel with LIO and TCMU (target_core_user), no tcmud yet"
note "kernel $(uname -r); modules: $(lsmod | awk '/^target_core_user|^tcm_loop|^target_core_mod/ {printf "%s ", $1}')"
note "TCMU hands each SCSI device's commands to a user-space daemon through a ring in"
note "shared memory; tcmud is that daemon, serving thin volumes from its own pools."

say "Start the system D-Bus (targetcli finds TCMU daemons on it) with tcmud's policy"
mkdir -p /usr/share/dbus-1/system.d
cp /vmlab/extra/tcmud-dbus.conf /usr/share/dbus-1/system.d/tcmud.conf
rm -f /etc/dbus-1/system.d/tcmu-runner.conf
start_dbus || die "no system bus"
note "dist/tcmud-dbus.conf: root may own org.kernel.TCMUService1"

say "Start tcmud with the default configuration (no config file: built-in defaults)"
printf '\033[36m# tcmud run &\033[0m    (log in %s)\n' "$TCMUD_LOG"
tcmud run > "$TCMUD_LOG" 2>&1 &
TCMUD_PID=$!
n=300
until grep -q 'tcmud ready' "$TCMUD_LOG"; do
    kill -0 "$TCMUD_PID" 2>/dev/null || die "tcmud exited"
    [ $n -le 0 ] && die "tcmud not ready"
    sleep 0.1; n=$((n - 1))
done
n=300
until grep -q 'D-Bus: serving' "$TCMUD_LOG"; do
    [ $n -le 0 ] && die "tcmud did not take its D-Bus name"
    sleep 0.1; n=$((n - 1))
done
log_grep 'control socket listening|tcmud ready|D-Bus: serving' | sed 's/^/    log: /'
note "defaults: pool 'default' at $POOL, nothing created on demand (auto_create = false)"

say "Create the pool and a 1 GiB thin volume (the CLI talks to the running daemon)"
run tcmud pool create "$POOL" --capacity 4GiB || die "pool create"
run tcmud volume create "$POOL" demo --size 1GiB || die "volume create"

say "targetcli sees tcmud's handlers as user-backed backstores"
tcli ls /backstores
printf '\033[36m# targetcli /backstores/user:thin help create\033[0m   (its end: the ConfigDesc tcmud offers)\n'
targetcli /backstores/user:thin help create < /dev/null 2>&1 | sed -n '/CFGSTRING FORMAT/,$p'

say "targetcli checks a cfgstring with tcmud before creating anything"
tcli /backstores/user:thin create name=oops size=1G cfgstring=default/nosuchvolume
note "(refused by tcmud's CheckConfig: nothing was created)"

say "Create the LUN with targetcli and export it on a local SCSI bus (tcm_loop)"
tcli /backstores/user:thin create name=demo size=1G cfgstring=default/demo
printf '\033[36m# targetcli /loopback create\033[0m\n'
out=$(targetcli /loopback create < /dev/null 2>&1)
echo "$out" | grep -v 'Could not load preferences'
WWN=$(echo "$out" | sed -n 's/.*Created target \(naa\.[0-9a-f]*\).*/\1/p')
[ -n "$WWN" ] || die "no loopback target"
tcli "/loopback/$WWN/luns" create /backstores/user:thin/demo
wait_for "/sys/devices/tcm_loop_0/*/host*/target*:0:1/*:0:1:0/block/*" 60 || die "no disk"
SDA=$(sd_of 0); wait_for "$SDA" 10
note "the new disk: $SDA ($(cat /sys/block/${SDA#/dev/}/size) sectors), served by tcmud"

say "Make a filesystem and write some files"
run mkfs.ext4 -q -F "$SDA" || die "mkfs"
mkdir -p /mnt/demo /mnt/clone
run mount "$SDA" /mnt/demo || die "mount"
echo "hello from tcmud, written $(date)" > /mnt/demo/hello.txt
cp -r /etc /mnt/demo/etc-copy
dd if=/dev/urandom of=/mnt/demo/random.bin bs=1M count=16 2>/dev/null
(cd /mnt/demo && sha256sum hello.txt random.bin > SHA256SUMS)
run ls -l /mnt/demo
run sync
run tcmud status

say "Take a live snapshot: the filesystem stays mounted and the LUN keeps serving"
run tcmud volume snapshot "$POOL" demo snap1 || die "snapshot"
echo "written after the snapshot" > /mnt/demo/after-snapshot.txt
sync
note "after-snapshot.txt is on the LUN now, not in snap1"

say "Clone the snapshot into a new writable volume and attach it as a second LUN"
run tcmud volume clone "$POOL" snap1 demo-clone || die "clone"
tcli /backstores/user:thin create name=demo-clone size=1G cfgstring=default/demo-clone
tcli "/loopback/$WWN/luns" create /backstores/user:thin/demo-clone
wait_for "/sys/devices/tcm_loop_0/*/host*/target*:0:1/*:0:1:1/block/*" 60 || die "no clone disk"
SDB=$(sd_of 1); wait_for "$SDB" 10
tcli ls "/loopback/$WWN"

say "Mount the clone and look at its files"
run mount "$SDB" /mnt/clone || die "mount clone"
run ls -l /mnt/clone
run cat /mnt/clone/hello.txt
(cd /mnt/clone && printf '\033[36m# sha256sum -c SHA256SUMS\033[0m\n' && sha256sum -c SHA256SUMS) || die "checksums"
if [ -e /mnt/clone/after-snapshot.txt ]; then die "the clone has a file written after the snapshot"; fi
note "after-snapshot.txt is not there: the clone is the volume as it was at the snapshot"

say "Thin provisioning: the clone shares the snapshot's blocks"
run tcmud volume list "$POOL"
umount /mnt/clone; umount /mnt/demo
printf '\n\033[1mDemo done: tcmud served two LUNs made by targetcli, a live snapshot and its clone.\033[0m\n'
echo "VERIFIED: demo complete"
