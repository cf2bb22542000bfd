# shellcheck shell=sh
# ceph-lib.sh -- a single-node Ceph cluster in the guest (busybox sh), for the RBD scenario and
# benchmark. Installed at /vmlab/ceph-lib.sh; needs the initramfs's ceph segment
# (build-initramfs.sh --ceph: ceph-mon, ceph-osd, monmaptool, ceph-authtool, rbd, radoscmd,
# the OSD's object classes, tcmu-runner's handler_rbd.so). Use:  . /vmlab/ceph-lib.sh
#
# The cluster: one monitor (mon.a) and one OSD (osd.0, memstore: objects in the OSD's memory),
# no manager (PGs are created by the monitor; nothing here needs PG statistics), auth none,
# bound to 127.0.0.1 only, pools of size 1. Its files are under $CEPH_DIR (default
# /tmp/ceph); the configuration is $CEPH_DIR/ceph.conf, exported as CEPH_CONF (librados,
# hence tcmud and tcmu-runner's rbd handler, read it from there) and copied to
# /etc/ceph/ceph.conf when CEPH_ETC=1 (the default in the guest).
#
#   ceph_start           write the configuration, create and start the monitor, wait for its
#                        quorum; create, start the OSD and wait until the map shows it up and in
#   ceph_pool NAME [PG]  create a replicated pool (size 1) for rbd
#   ceph_image POOL/IMG SIZE_MB   create an RBD image (rbd create; blocks until the PGs serve)
#   ceph_stop            SIGTERM both daemons and wait for them to exit
#   ceph_diag            the daemons' log tails
# Every wait is for a condition (a command succeeding, the OSD map) with a deadline, never a
# fixed sleep.

CEPH_DIR=${CEPH_DIR:-/tmp/ceph}
CEPH_MON_V2=${CEPH_MON_V2:-3300}
CEPH_MON_V1=${CEPH_MON_V1:-6789}
CEPH_ETC=${CEPH_ETC:-1}
CEPH_FSID=${CEPH_FSID:-5d9e7b0a-1c2f-4e3a-9b8c-7d6e5f4a3b21}
CEPH_MEM_GB=${CEPH_MEM_GB:-2}
export CEPH_CONF=$CEPH_DIR/ceph.conf
CEPH_MON_PID="" CEPH_OSD_PID=""

cmsg() { echo "GUEST: ceph: $*"; }
cfail() { ceph_diag; echo "GUEST-FAIL: ceph: $*"; exit 1; }

# ceph_uptime -> seconds since boot (for the timings printed)
ceph_uptime() { cut -d' ' -f1 /proc/uptime; }

ceph_conf() {
    mkdir -p "$CEPH_DIR/run" "$CEPH_DIR/mon.a" "$CEPH_DIR/osd.0"
    cat > "$CEPH_CONF" <<EOF
[global]
fsid = $CEPH_FSID
mon host = [v2:127.0.0.1:$CEPH_MON_V2,v1:127.0.0.1:$CEPH_MON_V1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
run dir = $CEPH_DIR/run
admin socket = $CEPH_DIR/run/\$name.asok
log file = $CEPH_DIR/\$name.log
log to stderr = false
err to stderr = true
mon cluster log file = $CEPH_DIR/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = $((CEPH_MEM_GB * 1024 * 1024 * 1024))
osd crush initial weight = 1
# a killed client's watch (and so its exclusive lock on an image) expires after this many
# seconds (default 30): the next opener takes the lock over sooner
osd client watch timeout = ${CEPH_WATCH_TIMEOUT:-15}
osd data = $CEPH_DIR/\$name
mon data = $CEPH_DIR/\$name
keyring = $CEPH_DIR/keyring

[osd]
osd memory target = 536870912
EOF
    if [ "$CEPH_ETC" = 1 ]; then mkdir -p /etc/ceph && cp "$CEPH_CONF" /etc/ceph/ceph.conf; fi
}

# ceph_until SECS WHAT CMD... -- run CMD (quietly) until it succeeds; fail after SECS
ceph_until() {
    _cu_end=$(( $(cut -d. -f1 /proc/uptime) + $1 )); _cu_what=$2; shift 2
    until "$@" > /dev/null 2>&1; do
        [ "$(cut -d. -f1 /proc/uptime)" -ge "$_cu_end" ] && return 1
        sleep 0.2
    done
    return 0
}

# ceph_osd_up -> true when the OSD map shows one OSD up and in
ceph_osd_up() {
    _j=$(radoscmd --timeout 10 '{"prefix": "osd stat", "format": "json"}' 2>/dev/null) || return 1
    echo "$_j" | grep -q '"num_up_osds":1[,}]' && echo "$_j" | grep -q '"num_in_osds":1[,}]'
}

ceph_start() {
    _t0=$(ceph_uptime)
    ceph_conf
    ceph-authtool --create-keyring "$CEPH_DIR/keyring" --gen-key -n mon. --cap mon 'allow *' \
        > "$CEPH_DIR/setup.log" 2>&1 || cfail "ceph-authtool"
    monmaptool --create --fsid "$CEPH_FSID" \
        --addv a "[v2:127.0.0.1:$CEPH_MON_V2,v1:127.0.0.1:$CEPH_MON_V1]" "$CEPH_DIR/monmap" \
        >> "$CEPH_DIR/setup.log" 2>&1 || cfail "monmaptool"
    ceph-mon --mkfs -i a --monmap "$CEPH_DIR/monmap" --keyring "$CEPH_DIR/keyring" \
        >> "$CEPH_DIR/setup.log" 2>&1 || cfail "ceph-mon --mkfs"
    ceph-mon -f -i a >> "$CEPH_DIR/mon.a.out" 2>&1 &
    CEPH_MON_PID=$!
    # quorum: the monitor answers a command (one monitor: quorum of itself)
    ceph_until 120 "mon quorum" radoscmd --timeout 10 '{"prefix": "quorum_status"}' ||
        cfail "mon.a not answering 120 s after start"
    kill -0 "$CEPH_MON_PID" 2>/dev/null || cfail "ceph-mon exited"
    cmsg "mon.a in quorum ($(radoscmd '{"prefix": "mon stat"}' 2>&1 | head -n1 | cut -c1-120))"
    _uuid=5d9e7b0a-0000-4000-8000-000000000001
    _id=$(radoscmd '{"prefix": "osd new", "uuid": "'"$_uuid"'"}' 2>>"$CEPH_DIR/setup.log") ||
        cfail "osd new"
    [ "$(echo "$_id" | tr -d ' \n')" = 0 ] || cfail "osd new gave id '$_id', expected 0"
    ceph-osd -i 0 --mkfs --osd-uuid "$_uuid" >> "$CEPH_DIR/setup.log" 2>&1 || cfail "ceph-osd --mkfs"
    ceph-osd -f -i 0 >> "$CEPH_DIR/osd.0.out" 2>&1 &
    CEPH_OSD_PID=$!
    ceph_until 180 "osd up" ceph_osd_up || cfail "osd.0 not up and in 180 s after start"
    kill -0 "$CEPH_OSD_PID" 2>/dev/null || cfail "ceph-osd exited"
    cmsg "osd.0 up and in; cluster started in $(awk -v a="$_t0" -v b="$(ceph_uptime)" 'BEGIN{printf "%.1f", b-a}') s"
}

# ceph_pool NAME [PG_NUM]
ceph_pool() {
    radoscmd '{"prefix": "osd pool create", "pool": "'"$1"'", "pg_num": '"${2:-8}"', "pool_type": "replicated"}' \
        >> "$CEPH_DIR/setup.log" 2>&1 || cfail "osd pool create $1"
    radoscmd '{"prefix": "osd pool application enable", "pool": "'"$1"'", "app": "rbd"}' \
        >> "$CEPH_DIR/setup.log" 2>&1 || cfail "osd pool application enable $1"
    cmsg "pool $1 created"
}

# ceph_image POOL/IMAGE SIZE_MB -- rbd create (blocks until the pool's PGs are active)
ceph_image() {
    timeout 180 rbd create --size "$2" "$1" >> "$CEPH_DIR/setup.log" 2>&1 || cfail "rbd create $1 (${2} MiB)"
    cmsg "image $1: $(rbd info "$1" 2>&1 | grep -E 'size|features' | tr -s ' \n' ' ')"
}

ceph_stop() {
    for _p in $CEPH_OSD_PID $CEPH_MON_PID; do kill -TERM "$_p" 2>/dev/null; done
    for _p in $CEPH_OSD_PID $CEPH_MON_PID; do
        _n=300
        while kill -0 "$_p" 2>/dev/null; do
            [ $_n -le 0 ] && { cmsg "pid $_p still running 30 s after SIGTERM: SIGKILL"; kill -KILL "$_p"; }
            sleep 0.1; _n=$((_n - 1))
        done
        wait "$_p" 2>/dev/null
    done
    CEPH_OSD_PID="" CEPH_MON_PID=""
}

ceph_diag() {
    for _f in setup.log mon.a.out mon.a.log osd.0.out osd.0.log; do
        [ -s "$CEPH_DIR/$_f" ] || continue
        echo "---- $CEPH_DIR/$_f (tail) ----"; tail -n 25 "$CEPH_DIR/$_f"
    done
}
