#!/bin/bash
# build-initramfs.sh -- assemble the guest initramfs for tcmud's QEMU harness
# (adapted from the project's vmlab recipe).
#
# Usage: build-initramfs.sh -o OUTDIR [-t TEST] [-b BINARY]... [-x EXTRA_FILE]...
#   -t TEST    guest script (busybox sh), copied to /vmlab/test.sh
#   -b BINARY  host executable copied to /vmlab/bin/<name> with its shared libraries (ldd);
#              static binaries are copied as is (used for target/release/tcmud)
#   -x FILE    extra host file copied to /vmlab/extra/<name> (ELF files get their libs too);
#              a directory is copied recursively
#   -s FILE    scenario script copied to /vmlab/scenarios/<name> (for guest/run-batch.sh)
#   --ceph     add the ceph segment (for the RBD scenario and benchmark; ~75 MB more guest RAM)
#
# Output: OUTDIR/initrd.img  = concatenation of cached cpio segments + a small uncompressed
#         per-run cpio (the kernel unpacks concatenated archives in order);
#         OUTDIR/vmlinuz (symlink to the cached kernel); OUTDIR/kver.
#
# Cached segments (in $VMLAB_CACHE/initramfs/, rebuilt when their inputs change):
#   base-<hash>.cpio  : busybox, /init, kernel modules, tcmu-runner + handlers,
#                          sg3-utils subset, dbus-daemon (+config), iproute2 genl
#   tools-<hash>.cpio : fio (+ its ~30 MB of ceph/gluster libraries), e2fsprogs
#                          (mkfs.ext4, e2fsck), util-linux (blkdiscard, fstrim)
#   targetcli-<hash>.cpio : only with VMLAB_TARGETCLI=1 (scenarios with `# needs: targetcli`,
#                          tests/vm/demo.sh): Debian's targetcli-fb with python3, rtslib-fb,
#                          configshell-fb and PyGObject (its D-Bus client)
#   ceph-<hash>.cpio  : only with --ceph: a single-node Ceph cluster's programs (ceph-mon,
#                          ceph-osd with its object classes and plugins, monmaptool,
#                          ceph-authtool, rbd, rados), radoscmd (tools/radoscmd.rs: monitor
#                          commands without the Python `ceph` CLI, built here with rustc) and
#                          tcmu-runner's handler_rbd.so; guest/ceph-lib.sh drives them; dmsetup and the dm-multipath
#                          and scsi_dh_alua modules (under /usr/lib/modules/KVER/alua, for scenario 20)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OUT="" TEST="" BINS=() EXTRA=() SCEN=() CEPH=0
while [ $# -gt 0 ]; do
    case $1 in
        --ceph) CEPH=1; shift;;
        -o) OUT=$2; shift 2;;
        -t) TEST=$2; shift 2;;
        -b) BINS+=("$2"); shift 2;;
        -x) EXTRA+=("$2"); shift 2;;
        -s) SCEN+=("$2"); shift 2;;
        *) die "unknown argument $1";;
    esac
done
[ -n "$OUT" ] || die "-o OUTDIR required"
mkdir -p "$OUT"

# Kernel modules wanted in the guest (dependencies are added automatically, load order is
# computed from modules.dep). crct10dif_generic only silences crc-t10dif's crypto lookup.
MODULES=${VMLAB_MODULES:-"configfs uio target_core_mod target_core_user target_core_file target_core_iblock \
tcm_loop scsi_mod sd_mod sg \
crct10dif_generic virtio_pci 9pnet_virtio 9p ext4 crc32c_generic"}

# Userspace packages extracted into the sysroot (not installed on the host).
SYSROOT_PKGS="kmod tcmu-runner libtcmu2 libnl-3-200 libnl-genl-3-200 libglib2.0-0 libkmod2 zlib1g \
sg3-utils libsgutils2-1.46-2 dbus-daemon dbus-bin dbus-system-bus-common libdbus-1-3 iproute2 \
libmnl0 libbsd0 libmd0 libcap2 libexpat1 libsystemd0 libselinux1 libaudit1 libcap-ng0 libapparmor1"
FIO_PKGS="fio libaio1 libnuma1 libgfapi0 libgfrpc0 libgfxdr0 libglusterfs0 libnbd0 librados2 librbd1 \
libpmem1 libpmemblk1 libboost-thread1.74.0 libboost-iostreams1.74.0 libfmt9 libibverbs1 librdmacm1 \
libnl-route-3-200 libndctl6 libdaxctl1 libudev1 libuuid1 liburcu8 libtirpc3 libacl1 libxml2 libicu72 \
libgnutls30 libssl3 \
e2fsprogs libext2fs2 libcom-err2 libss2 libblkid1 util-linux libmount1 libsmartcols1 libpcre2-8-0"
# Debian's targetcli-fb and what it runs on (the packages' own files, not the sysroot's).
TARGETCLI_PKGS="targetcli-fb python3-rtslib-fb python3-configshell-fb python3-gi gir1.2-glib-2.0 \
libgirepository-1.0-1 libffi8 python3-six python3-pyudev python3-pyparsing python3-urwid \
python3-minimal python3.11-minimal libpython3.11-minimal libpython3.11-stdlib python3 python3.11 \
libreadline8 libtinfo6 libncursesw6 libbz2-1.0 liblzma5 libsqlite3-0 libuuid1 libudev1 libssl3 \
libc-bin"
# binaries taken from the tools packages (path inside the sysroot)
TOOL_BINS="/usr/bin/fio /sbin/mke2fs /sbin/e2fsck /sbin/blkdiscard /sbin/fstrim /bin/lsblk"
# --ceph: the cluster's packages (Debian's ceph 16.2) and the libraries their programs need
CEPH_PKGS="ceph-mon ceph-osd ceph-common ceph-base librados2 librbd1 libradosstriper1 libleveldb1d \
liblz4-1 libsnappy1v5 libboost-program-options1.74.0 libfuse2 libcryptsetup12 libdevmapper1.02.1 \
libargon2-1 libjson-c5 libkeyutils1 liboath0 liblua5.3-0 libzstd1 libncurses6 libtinfo6 \
dmsetup"
CEPH_BINS="ceph-mon ceph-osd monmaptool ceph-authtool rbd rados"
# --ceph, for the ALUA scenario (two daemons, one image, dm-multipath over both paths):
# device-mapper multipath and the ALUA device handler, loaded by the scenario itself
ALUA_MODULES="drivers/md/dm-mod drivers/md/dm-multipath drivers/md/dm-round-robin \
drivers/scsi/device_handler/scsi_dh_alua"
SG_TOOLS="sg_inq sg_readcap sg_turs sg_raw sg_vpd sg_luns sg_modes sg_sync sg_unmap sg_write_same \
sg_get_lba_status sg_rtpg sg_stpg sg_persist sg_opcodes sg_requests sg_compare_and_write sg_dd sg_map26 \
sg_rep_zones sg_xcopy sg_senddiag sg_decode_sense sg_verify sg_start sg_prevent"

t0=$(date +%s.%N)
TMPDIRS=()
cleanup() { for d in ${TMPDIRS[@]+"${TMPDIRS[@]}"}; do rm -rf "$d"; done; }
trap cleanup EXIT
mkdir -p "$VMLAB_CACHE"
# Serialise cache population (kernel extraction, sysroot, cached segments) between
# concurrent runs sharing one cache; released before the per-run segment is built.
exec 9>"$VMLAB_CACHE/.lock"
flock 9
ensure_host_tools
kernel_prepare
S=$VMLAB_CACHE/sysroot
C=$VMLAB_CACHE/initramfs
mkdir -p "$C"
me=$(cd "$(dirname "$0")" && pwd)

# ---------------------------------------------------------------- base segment
base_key=$( { cat "$me/lib.sh" "$me/build-initramfs.sh" "$me/guest/init";
              echo "$VMLAB_KPKG $MODULES $SYSROOT_PKGS $SG_TOOLS"; } | sha256sum | cut -c1-16)
BASE=$C/base-$base_key.cpio
if [ ! -s "$BASE" ]; then
    vlog "building base segment $BASE"
    # shellcheck disable=SC2086 # a list of package names
    sysroot_add $SYSROOT_PKGS
    R=$(mktemp -d "$C/root.XXXXXX"); TMPDIRS+=("$R")
    # merged-/usr layout like Debian 12
    mkdir -p "$R"/{usr/bin,usr/sbin,usr/lib/"$MULTIARCH",usr/lib64,etc,proc,sys,dev,tmp,run,root,var,vmlab,mnt,host}
    ln -s usr/bin "$R/bin"; ln -s usr/sbin "$R/sbin"; ln -s usr/lib "$R/lib"; ln -s usr/lib64 "$R/lib64"
    ln -s ../run "$R/var/run"; mkdir -p "$R/var/tmp"
    # busybox + applet links
    cp /bin/busybox "$R/usr/bin/busybox"
    for a in $(busybox --list-full); do
        [ -e "$R/$a" ] || [ -L "$R/$a" ] || ln -s /usr/bin/busybox "$R/$a" 2>/dev/null || true
    done
    install -m 0755 "$me/guest/init" "$R/init"

    # kernel modules (uncompressed copies) + load order
    M=$R/lib/modules/$KVER
    mkdir -p "$M" "$R/etc/vmlab"
    # shellcheck disable=SC2086 # a list of module names
    kmod_closure $MODULES > "$R/etc/vmlab/modules.load"
    while read -r m; do
        mkdir -p "$M/$(dirname "$m")"
        case $m in
            *.ko)     cp "$KDIR/lib/modules/$KVER/$m" "$M/$m" ;;
            *.ko.xz)  xz -dc   "$KDIR/lib/modules/$KVER/$m" > "$M/${m%.xz}" ;;
            *.ko.zst) zstd -qdc "$KDIR/lib/modules/$KVER/$m" > "$M/${m%.zst}" ;;
            *.ko.gz)  gzip -dc "$KDIR/lib/modules/$KVER/$m" > "$M/${m%.gz}" ;;
        esac
    done < "$R/etc/vmlab/modules.load"
    sed -i -E 's/\.ko\.(xz|zst|gz)$/.ko/' "$R/etc/vmlab/modules.load"
    cp "$KDIR/lib/modules/$KVER/"modules.{builtin,builtin.modinfo,order} "$M/" 2>/dev/null || true
    # Real (kmod) depmod from the extracted kmod .deb: it also writes the binary indexes
    # (modules.dep.bin, modules.alias.bin, ...) that libkmod needs -- tcmu-runner calls
    # kmod_module_new_from_lookup("target_core_user") at startup and exits with
    # "couldn't load module" if /lib/modules/<ver> exists without them.
    # Text modules.dep/alias are also what busybox modprobe (kernel request_module) reads.
    ln -sf "$S/bin/kmod" "$VMLAB_CACHE/depmod"
    "$VMLAB_CACHE/depmod" -b "$R" "$KVER"

    # glibc dlopen()s libgcc_s.so.1 for pthread_cancel/unwinding (invisible to ldd)
    copy_elf "$R" "$(readlink -f "/lib/$MULTIARCH/libgcc_s.so.1")" "/usr/lib/$MULTIARCH/libgcc_s.so.1"
    # tcmu-runner (handler_rbd.so skipped: it needs librbd and a ceph cluster)
    copy_elf "$R" "$S/usr/bin/tcmu-runner"
    for h in "$S/usr/lib/$MULTIARCH/tcmu-runner/"handler_*.so; do
        case $h in *handler_rbd.so) continue;; esac
        copy_elf "$R" "$h"
    done
    mkdir -p "$R/etc/tcmu" "$R/var/log" "$R/etc/target"   # /etc/target: target_core_mod db_root
    cp "$S/etc/tcmu/tcmu.conf" "$R/etc/tcmu/"
    # sg3-utils subset, genl, dbus-daemon (+ system bus config incl. tcmu-runner policy)
    for t in $SG_TOOLS; do [ -e "$S/usr/bin/$t" ] && copy_elf "$R" "$S/usr/bin/$t"; done
    copy_elf "$R" "$S/usr/sbin/genl"
    copy_elf "$R" "$S/usr/bin/dbus-daemon"
    copy_elf "$R" "$S/usr/bin/dbus-send"
    mkdir -p "$R/usr/share/dbus-1" "$R/etc/dbus-1/system.d"
    cp "$S/usr/share/dbus-1/system.conf" "$R/usr/share/dbus-1/"
    cp "$S/etc/dbus-1/system.d/tcmu-runner.conf" "$R/etc/dbus-1/system.d/"
    # users/groups (dbus-daemon switches to messagebus), machine-id
    printf 'root:x:0:0:root:/root:/bin/sh\nmessagebus:x:100:101::/run/dbus:/bin/false\nnobody:x:65534:65534::/:/bin/false\n' > "$R/etc/passwd"
    printf 'root:x:0:\nmessagebus:x:101:\nnogroup:x:65534:\n' > "$R/etc/group"
    echo 0123456789abcdef0123456789abcdef > "$R/etc/machine-id"
    mkdir -p "$R/var/lib/dbus"; ln -s /etc/machine-id "$R/var/lib/dbus/machine-id"
    mk_cpio "$R" "$BASE" none
    rm -rf "$R"
    # keep only the current base image
    for old in "$C"/base-*.cpio; do [ "$old" = "$BASE" ] || rm -f "$old"; done
fi
SEGS=("$BASE")

# ---------------------------------------------------------------- tools segment
tools_key=$( { cat "$me/lib.sh"; echo "$FIO_PKGS $TOOL_BINS"; } | sha256sum | cut -c1-16)
TOOLS=$C/tools-$tools_key.cpio
if [ ! -s "$TOOLS" ]; then
    vlog "building tools segment $TOOLS"
    # shellcheck disable=SC2086 # a list of package names
    sysroot_add $FIO_PKGS
    R=$(mktemp -d "$C/root.XXXXXX"); TMPDIRS+=("$R")
    for b in $TOOL_BINS; do
        f=$S$b; [ -e "$f" ] || f=$S/usr$b; [ -e "$f" ] || f=$S${b#/usr}
        [ -e "$f" ] || die "tool $b not found in the sysroot"
        # all in /usr/sbin (first on PATH): the real tools replace busybox applets of the same name
        copy_elf "$R" "$f" "/usr/sbin/$(basename "$b")"
    done
    ln -s mke2fs "$R/usr/sbin/mkfs.ext4"
    ln -s e2fsck "$R/usr/sbin/fsck.ext4"
    mkdir -p "$R/etc"; cp "$S/etc/mke2fs.conf" "$R/etc/" 2>/dev/null || true
    mk_cpio "$R" "$TOOLS" none
    rm -rf "$R"
    for old in "$C"/tools-*.cpio; do [ "$old" = "$TOOLS" ] || rm -f "$old"; done
fi
SEGS+=("$TOOLS")

# ---------------------------------------------------------------- targetcli segment (optional)
if [ "${VMLAB_TARGETCLI:-0}" = 1 ]; then
    tcli_key=$( { cat "$me/lib.sh"; echo "$TARGETCLI_PKGS v2"; } | sha256sum | cut -c1-16)
    TCLI=$C/targetcli-$tcli_key.cpio
    if [ ! -s "$TCLI" ]; then
        vlog "building targetcli segment $TCLI"
        # shellcheck disable=SC2086 # a list of package names
        sysroot_add $TARGETCLI_PKGS
        R=$(mktemp -d "$C/root.XXXXXX"); TMPDIRS+=("$R")
        for pkg in $TARGETCLI_PKGS; do
            # every file and symlink of the package (documentation left out), ELF files with
            # their libraries
            dpkg-deb --fsys-tarfile "$(fetch_deb "$pkg")" | tar -t |
                sed -e 's|^\./|/|' -e '/\/$/d' -e '\#^/usr/share/\(doc\|man\|lintian\|locale\)/#d' |
                while read -r f; do
                    [ -e "$S$f" ] || [ -L "$S$f" ] || continue
                    # merged /usr in the guest: /lib, /bin, /sbin are symlinks there
                    case $f in /lib/*|/lib64/*|/bin/*|/sbin/*) d=/usr$f;; *) d=$f;; esac
                    mkdir -p "$R$(dirname "$d")"
                    if [ -L "$S$f" ]; then cp -a "$S$f" "$R$d"
                    elif [ "$(head -c4 "$S$f" | tail -c3)" = ELF ]; then copy_elf "$R" "$S$f" "$d"
                    else cp -a "$S$f" "$R$d"; fi
                done
        done
        # rtslib-fb's configfs dbroot (the kernel takes it only if the directory exists)
        mkdir -p "$R/etc/rtslib-fb-target"
        mk_cpio "$R" "$TCLI" none
        rm -rf "$R"
        for old in "$C"/targetcli-*.cpio; do [ "$old" = "$TCLI" ] || rm -f "$old"; done
    fi
    SEGS+=("$TCLI")
fi
# ---------------------------------------------------------------- ceph segment (--ceph)
if [ "$CEPH" = 1 ]; then
    ceph_key=$( { cat "$me/lib.sh" "$me/tools/radoscmd.rs"; sed -n '/^# ---* ceph segment/,/^fi$/p' "$0";
                  echo "$CEPH_PKGS $CEPH_BINS $ALUA_MODULES"; } | sha256sum | cut -c1-16)
    CEPHSEG=$C/ceph-$ceph_key.cpio
    if [ ! -s "$CEPHSEG" ]; then
        vlog "building ceph segment $CEPHSEG"
        # shellcheck disable=SC2086 # a list of package names
        sysroot_add $SYSROOT_PKGS $FIO_PKGS $CEPH_PKGS
        R=$(mktemp -d "$C/root.XXXXXX"); TMPDIRS+=("$R")
        L=/usr/lib/$MULTIARCH
        for b in $CEPH_BINS; do copy_elf "$R" "$S/usr/bin/$b"; done
        # the OSD's object classes (cls_rbd, cls_lock, ...: `osd class dir`), erasure-code
        # plugins (preloaded by mon and osd), compressors and crypto plugins; the .so names
        # only (dereferenced), as the daemons dlopen them
        for f in "$S$L"/rados-classes/libcls_*.so "$S$L"/ceph/erasure-code/*.so \
                 "$S$L"/ceph/compressor/*.so "$S$L"/ceph/crypto/*.so; do
            [ -e "$f" ] && copy_elf "$R" "$f"
        done
        # tcmu-runner's rbd handler (the base segment skips it)
        copy_elf "$R" "$S$L/tcmu-runner/handler_rbd.so"
        # dmsetup and the multipath modules (scenario 20: insmod in this order)
        copy_elf "$R" "$S/sbin/dmsetup" /usr/sbin/dmsetup
        A=$R/usr/lib/modules/$KVER/alua   # /lib is a symlink to usr/lib in the base segment
        mkdir -p "$A"
        for m in $ALUA_MODULES; do
            k=$KDIR/lib/modules/$KVER/kernel/$m
            n=$A/$(basename "$m").ko
            if [ -e "$k.ko" ]; then cp "$k.ko" "$n"
            elif [ -e "$k.ko.xz" ]; then xz -dc "$k.ko.xz" > "$n"
            elif [ -e "$k.ko.zst" ]; then zstd -qdc "$k.ko.zst" > "$n"
            else die "kernel module $m not found"; fi
        done
        # radoscmd: monitor commands (pool creation, osd new, osd stat) through librados
        T=$(mktemp -d); TMPDIRS+=("$T")
        ln -s "$S$L/librados.so.2" "$T/librados.so"
        rustc --edition 2021 -O -L "native=$T" -o "$T/radoscmd" "$me/tools/radoscmd.rs" ||
            die "building tools/radoscmd.rs failed"
        copy_elf "$R" "$T/radoscmd" /usr/bin/radoscmd
        mkdir -p "$R/etc/ceph"
        mk_cpio "$R" "$CEPHSEG" none
        rm -rf "$R"
        for old in "$C"/ceph-*.cpio; do [ "$old" = "$CEPHSEG" ] || rm -f "$old"; done
    fi
    SEGS+=("$CEPHSEG")
fi

flock -u 9

# ---------------------------------------------------------------- per-run segment
R=$(mktemp -d "$C/run.XXXXXX"); TMPDIRS+=("$R")
mkdir -p "$R/vmlab/bin" "$R/vmlab/extra"
# guest helper libraries live in the per-run segment: editing them needs no base rebuild
for l in "$me"/guest/*-lib.sh; do install -m 0644 "$l" "$R/vmlab/$(basename "$l")"; done
for b in ${BINS[@]+"${BINS[@]}"}; do
    [ -f "$b" ] || die "binary $b not found"
    copy_elf "$R" "$b" "/vmlab/bin/$(basename "$b")"
done
if [ -n "$TEST" ]; then
    [ -f "$TEST" ] || die "test script $TEST not found"
    install -m 0755 "$TEST" "$R/vmlab/test.sh"
fi
if [ ${#SCEN[@]} -gt 0 ]; then
    mkdir -p "$R/vmlab/scenarios"
    for x in "${SCEN[@]}"; do install -m 0755 "$x" "$R/vmlab/scenarios/$(basename "$x")"; done
fi
for x in ${EXTRA[@]+"${EXTRA[@]}"}; do
    if [ -d "$x" ]; then cp -rL "$x" "$R/vmlab/extra/"; continue; fi
    [ -f "$x" ] || die "extra file $x not found"
    if [ "$(head -c4 "$x" | tail -c3)" = ELF ]; then copy_elf "$R" "$x" "/vmlab/extra/$(basename "$x")"
    else cp -L "$x" "$R/vmlab/extra/"; fi
done
{
    printf 'export VMLAB_TEST_ARGS=%q\n' "${VMLAB_TEST_ARGS:-}"
    printf 'export PATH=/vmlab/bin:/vmlab/extra:/usr/sbin:/usr/bin:/sbin:/bin\n'
} > "$R/vmlab/env"
mk_cpio "$R" "$OUT/run.cpio" none
# The kernel only recognises an uncompressed cpio that starts at a 4-byte aligned offset
# (zero bytes between archives are skipped), so pad every segment to a multiple of 4.
: > "$OUT/initrd.img"
for seg in "${SEGS[@]}" "$OUT/run.cpio"; do
    cat "$seg" >> "$OUT/initrd.img"
    pad=$(( (4 - $(stat -c %s "$OUT/initrd.img") % 4) % 4 ))
    [ "$pad" = 0 ] || head -c "$pad" /dev/zero >> "$OUT/initrd.img"
done
rm -f "$OUT/run.cpio"
ln -sf "$KIMG" "$OUT/vmlinuz"
echo "$KVER" > "$OUT/kver"
t1=$(date +%s.%N)
vlog "initramfs ready: $OUT/initrd.img ($(du -h "$OUT/initrd.img" | cut -f1)), kernel $KVER, $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s"
