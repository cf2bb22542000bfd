#!/usr/bin/env bash
# A throw-away single-node Ceph cluster from Debian's packages, for the RBD
# backstore's tests: one monitor and one OSD (bluestore on a sparse file, so
# that a killed OSD restarts with its data), no manager, loopback only
# (127.0.0.1), `osd pool default size = 1`, cephx with one keyring
# (DIR/keyring: mon., client.admin, osd.0) named in DIR/ceph.conf, a pool
# `rbd` initialised for RBD. (cephx rather than auth none: with auth none a
# command sent before the client has the monitor map is refused, "wrong
# fsid", which made starts flaky.)
#
#   cluster.sh start DIR        start a cluster under DIR (created; must not hold one)
#   cluster.sh stop DIR         kill every daemon of it and remove DIR
#   cluster.sh env DIR          print the exports the tests read (CEPH_CONF, TCMUD_TEST_CEPH_*)
#   cluster.sh image DIR NAME SIZE   create an RBD image in pool rbd (SIZE: 64M, 1G...)
#   cluster.sh kill-osd DIR     SIGKILL the OSD (the monitor keeps running)
#   cluster.sh start-osd DIR    start the OSD again and wait until it is up
#
# Every wait is on a condition (monitor quorum, OSD up, a write to the pool)
# with a deadline, never a fixed sleep. Needs: ceph-mon ceph-osd ceph-common.
set -euo pipefail

die() { echo "cluster.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: cluster.sh start|stop|env|image|kill-osd|start-osd DIR [...]"
cmd=$1
dir=$(realpath -m "$2")
conf="$dir/ceph.conf"
TIMEOUT=${CEPH_CLUSTER_TIMEOUT:-120}

ceph_() { timeout 30 ceph -c "$conf" --connect-timeout 10 "$@"; }

# wait_for WHAT CMD...: runs CMD until it succeeds or TIMEOUT seconds pass.
wait_for() {
    local what=$1; shift
    local deadline=$((SECONDS + TIMEOUT)) delay=0.05
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            echo "cluster.sh: timed out waiting for $what; logs in $dir/log:" >&2
            tail -n 20 "$dir"/log/*.log >&2 2>/dev/null || true
            return 1
        fi
        sleep "$delay"   # poll interval of a condition wait, not a wait for an event
        delay=0.2
    done
}

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 20000))
        if ! ss -Htln "sport = :$p" | grep -q .; then echo "$p"; return; fi
    done
    die "no free port found"
}

# the process is gone (or a zombie nobody reaped yet)
gone() { [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
osd_up() { ceph_ osd dump -f json | grep -q '"up":1'; }
quorum() { ceph_ quorum_status -f json | grep -q '"quorum_names":\["a"\]'; }
# the pool takes a write (its PGs are active: without a manager `ceph pg
# stat` has no PG states to wait on)
pool_writable() {
    timeout 10 rados -c "$conf" -p rbd put tcmud-probe /dev/null &&
        timeout 10 rados -c "$conf" -p rbd rm tcmud-probe
}

start_osd() {
    ceph-osd -c "$conf" -i 0 --pid-file "$dir/run/osd.0.pid" 2>>"$dir/log/osd-start.log"
    wait_for "osd.0 up" osd_up
}

case $cmd in
start)
    command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null ||
        die "ceph-mon/ceph-osd not installed (apt-get install ceph-mon ceph-osd ceph-common)"
    [ -e "$dir/ceph.conf" ] && die "$dir already holds a cluster (stop it first)"
    mkdir -p "$dir"/{mon/ceph-a,osd/ceph-0,run,log}
    port=$(free_port)
    fsid=$(cat /proc/sys/kernel/random/uuid)
    cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$port
public network = 127.0.0.1/32
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
keyring = $dir/keyring
[mon]
mon data = $dir/mon/ceph-\$id
mon cluster log file = $dir/log/cluster.log
[osd]
osd data = $dir/osd/ceph-\$id
osd objectstore = bluestore
bluestore block path = $dir/osd/ceph-\$id/block.file
bluestore block create = true
bluestore block size = 4294967296
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 134217728
osd memory target = 939524096
osd max object name len = 256
osd max object namespace len = 64
osd op num shards = 1
osd op num threads per shard = 2
CONF
    kr=(ceph-authtool "$dir/keyring" --gen-key)
    "${kr[@]}" --create-keyring -n mon. --cap mon 'allow *' >/dev/null
    "${kr[@]}" -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
        --cap mgr 'allow *' >/dev/null
    "${kr[@]}" -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' \
        --cap mgr 'allow profile osd' >/dev/null
    monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$port]" "$dir/monmap" >/dev/null
    ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" >"$dir/log/mkfs.log" 2>&1 ||
        { cat "$dir/log/mkfs.log" >&2; die "ceph-mon --mkfs failed"; }
    ceph-mon -c "$conf" -i a
    wait_for "monitor quorum" quorum
    uuid=$(cat /proc/sys/kernel/random/uuid)
    id=$(ceph_ osd new "$uuid")
    [ "$id" = 0 ] || die "first OSD got id $id"
    ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$uuid" >>"$dir/log/mkfs.log" 2>&1 ||
        { tail -n 30 "$dir/log/mkfs.log" >&2; die "ceph-osd --mkfs failed"; }
    start_osd
    ceph_ osd pool create rbd 8 8 >/dev/null 2>&1
    timeout 60 rbd -c "$conf" pool init rbd
    wait_for "pool rbd writable" pool_writable
    echo "cluster up in $dir (mon 127.0.0.1:$port, cephx, keyring $dir/keyring)"
    ;;
stop)
    for f in "$dir"/run/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        # only a ceph daemon of this cluster (its command line names our conf)
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$conf"; then
            kill -9 "$pid" 2>/dev/null || true
            wait_for "pid $pid to exit" gone "$pid"
        fi
    done
    case $dir in /|"") die "refusing to remove $dir" ;; esac
    [ ! -e "$dir" ] || [ -e "$dir/ceph.conf" ] || die "$dir holds no cluster; not removed"
    rm -rf "$dir"
    ;;
env)
    [ -e "$conf" ] || die "no cluster in $dir"
    echo "export CEPH_CONF=$conf"
    echo "export TCMUD_TEST_CEPH_CONF=$conf"
    echo "export TCMUD_TEST_CEPH_DIR=$dir"
    ;;
image)
    [ $# -eq 4 ] || die "usage: cluster.sh image DIR NAME SIZE"
    timeout 60 rbd -c "$conf" create --size "$4" "rbd/$3"
    ;;
kill-osd)
    pid=$(cat "$dir/run/osd.0.pid")
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$conf" || die "pid $pid is not our OSD"
    kill -9 "$pid"
    # gone from the process table (the monitor marks it down later)
    wait_for "osd.0 to exit" gone "$pid"
    ;;
start-osd)
    start_osd
    ;;
*) die "unknown command $cmd" ;;
esac
