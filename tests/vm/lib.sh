# shellcheck shell=bash
# lib.sh -- host-side helpers of tcmud's QEMU harness (adapted from the project's vmlab recipe).
# Source it; do not run it.
#
# Everything downloaded or extracted lands in $VMLAB_CACHE
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/tcmud-vm):
#   $VMLAB_CACHE/debs/            .deb files fetched with `apt-get download` (never installed)
#   $VMLAB_CACHE/kernel-<pkg>/    dpkg -x of the linux-image package (+ modules.dep made here)
#   $VMLAB_CACHE/sysroot/         dpkg -x of userspace packages the host does not have
#                                 (tcmu-runner, libtcmu2, sg3-utils, ...); used only to
#                                 resolve shared libraries and copy files into the initramfs.
#   $VMLAB_CACHE/initramfs/       cached base initramfs images, keyed by a content hash
#
# Host requirements: a Debian 12 (bookworm) host with apt-get and working sources, dpkg, ldd,
# gzip. busybox-static (guest userland, `cpio -o`, `depmod`) and qemu-system-x86 are
# apt-get installed on demand (after `apt-get update`; non-interactive, needs root).

set -euo pipefail

VMLAB_SCRIPTS=${VMLAB_SCRIPTS:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
VMLAB_CACHE=${VMLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcmud-vm}
# Kernel image package. Default: whatever the linux-image-amd64 metapackage currently points at.
VMLAB_KPKG=${VMLAB_KPKG:-}
MULTIARCH=x86_64-linux-gnu

vlog() { printf '[vm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { vlog "ERROR: $*"; exit 2; }

# apt_update_once: `apt-get update` before the first download (package lists may be stale or
# missing on a fresh host/CI image); at most once an hour (stamp file, works from subshells).
apt_update_once() {
    local stamp=$VMLAB_CACHE/.apt-updated
    mkdir -p "$VMLAB_CACHE"
    [ -n "$(find "$stamp" -mmin -60 2>/dev/null)" ] && return 0
    vlog "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >&2 || vlog "WARNING: apt-get update failed"
    touch "$stamp"
}

# Install the host tools we need (qemu, busybox-static) if missing.
ensure_host_tools() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    [ -x /bin/busybox ] || need+=(busybox-static)
    command -v dpkg >/dev/null && command -v apt-get >/dev/null ||
        die "apt-get/dpkg not found: this harness needs a Debian 12 (bookworm) host"
    if [ ${#need[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "missing ${need[*]}; run as root (or: sudo apt-get install ${need[*]})"
        apt_update_once
        vlog "apt-get install ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" </dev/null >&2 ||
            die "apt-get install ${need[*]} failed"
    fi
    command -v ldd >/dev/null || die "ldd missing"
}

# fetch_deb PKG -> prints path of PKG's .deb in $VMLAB_CACHE/debs (downloads it if missing).
fetch_deb() {
    local pkg=$1 d=$VMLAB_CACHE/debs f
    mkdir -p "$d"
    f=$(ls "$d/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$f" ]; then
        vlog "apt-get download $pkg"
        apt_update_once
        # apt drops privileges to _apt; a root-only cache dir triggers a harmless warning.
        (cd "$d" && apt-get download "$pkg" </dev/null >&2 2>/dev/null) ||
            (cd "$d" && apt-get download "$pkg" </dev/null >&2) ||
            die "apt-get download $pkg failed"
        f=$(ls "$d/${pkg}_"*.deb | head -n1)
    fi
    echo "$f"
}

# sysroot_add PKG... : dpkg -x each package into $VMLAB_CACHE/sysroot (once per package).
sysroot_add() {
    local s=$VMLAB_CACHE/sysroot pkg deb
    mkdir -p "$s/.done"
    for pkg in "$@"; do
        [ -e "$s/.done/$pkg" ] && continue
        deb=$(fetch_deb "$pkg")
        dpkg -x "$deb" "$s"
        touch "$s/.done/$pkg"
    done
}

# kernel_prepare -> sets KDIR (extracted package root), KVER (uname -r), KIMG (vmlinuz path).
kernel_prepare() {
    if [ -z "$VMLAB_KPKG" ]; then
        # Reuse an already extracted kernel (stable across runs, no network needed) ...
        local k
        for k in "$VMLAB_CACHE"/kernel-*/.done; do
            [ -e "$k" ] || continue
            k=${k%/.done}; VMLAB_KPKG=${k##*/kernel-}; break
        done
    fi
    if [ -z "$VMLAB_KPKG" ]; then
        # ... else whatever the linux-image-amd64 metapackage points at after an update.
        apt_update_once
        VMLAB_KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
                     awk '/Depends: linux-image-[0-9]/{print $2; exit}')
        [ -n "$VMLAB_KPKG" ] || die "cannot resolve linux-image-amd64 dependency; set VMLAB_KPKG"
    fi
    KDIR=$VMLAB_CACHE/kernel-$VMLAB_KPKG
    if [ ! -e "$KDIR/.done" ]; then
        local deb; deb=$(fetch_deb "$VMLAB_KPKG")
        rm -rf "$KDIR"; mkdir -p "$KDIR"
        vlog "extracting $deb"
        dpkg -x "$deb" "$KDIR"
        KVER=$(ls "$KDIR/lib/modules" | head -n1)
        # Debian generates modules.dep at install time (depmod); the .deb has none.
        # busybox depmod writes text modules.dep/modules.alias/modules.symbols - enough for us.
        busybox depmod -b "$KDIR" "$KVER"
        touch "$KDIR/.done"
    fi
    KVER=$(ls "$KDIR/lib/modules" | head -n1)
    # shellcheck disable=SC2034 # used by build-initramfs.sh
    KIMG=$(ls "$KDIR/boot/vmlinuz-"* | head -n1)
}

# kmod_closure MOD... -> prints module paths (relative to /lib/modules/$KVER) in load order,
# dependencies first, each once. Uses $KDIR/lib/modules/$KVER/modules.dep.
kmod_closure() {
    local dep=$KDIR/lib/modules/$KVER/modules.dep
    awk -v want="$*" '
        function base(p,  b) { b = p; sub(/.*\//, "", b); sub(/\.ko(\.(xz|gz|zst))?$/, "", b); gsub(/-/, "_", b); return b }
        function visit(m,  n, i, d) {
            if (m in seen) return; seen[m] = 1
            if (!(m in path)) { print "MISSING " m > "/dev/stderr"; bad = 1; return }
            # modules.dep lists a module'"'"'s deps such that loading them right-to-left works
            n = split(deps[m], d, " ")
            for (i = n; i >= 1; i--) visit(base(d[i]))
            print path[m]
        }
        { p = $1; sub(/:$/, "", p); m = base(p); path[m] = p; $1 = ""; deps[m] = $0 }
        END { n = split(want, w, " "); for (i = 1; i <= n; i++) { x = w[i]; gsub(/-/, "_", x); visit(x) }
              exit bad }' "$dep"
}

# copy_elf ROOT FILE [DEST] : copy an ELF executable or shared object into ROOT (at DEST,
# default: same path as FILE, with any $VMLAB_CACHE/sysroot prefix stripped) plus every
# shared library ldd resolves for it (into ROOT/usr/lib/$MULTIARCH) and the ELF interpreter.
# Libraries are looked up in the sysroot first, then on the host.
copy_elf() {
    local root=$1 file=$2 dest=${3:-} s=$VMLAB_CACHE/sysroot line lib real
    [ -n "$dest" ] || dest=${file#"$s"}
    mkdir -p "$root$(dirname "$dest")"
    rm -f "$root$dest"     # never write through a busybox applet symlink
    cp -L "$file" "$root$dest"; chmod u+w "$root$dest"
    local out
    out=$(LD_LIBRARY_PATH="$s/usr/lib/$MULTIARCH:$s/lib/$MULTIARCH:$s/usr/lib/$MULTIARCH/ceph" \
          ldd "$file" 2>&1) || {
        case $out in *"not a dynamic executable"*|*"statically linked"*) return 0;; esac
    }
    case $out in *"statically linked"*|*"not a dynamic executable"*) return 0;; esac
    if grep -q 'not found' <<<"$out"; then
        vlog "ldd $file:"; echo "$out" >&2
        die "unresolved shared libraries for $file (add the owning package to the sysroot list)"
    fi
    mkdir -p "$root/usr/lib/$MULTIARCH" "$root/usr/lib64"
    while read -r line; do
        case $line in
            *"=> "/*) lib=${line#*=> }; lib=${lib%% (*}
                      real=$(readlink -f "$lib")
                      [ -e "$root/usr/lib/$MULTIARCH/$(basename "$lib")" ] ||
                          cp "$real" "$root/usr/lib/$MULTIARCH/$(basename "$lib")" ;;
            /*ld-linux*) lib=${line%% (*}
                      [ -e "$root/usr/lib64/$(basename "$lib")" ] ||
                          cp "$(readlink -f "$lib")" "$root/usr/lib64/$(basename "$lib")" ;;
        esac
    done <<<"$out"
}

# mk_cpio DIR OUT [gzip|none] : pack DIR as a newc cpio (owner root) into OUT.
mk_cpio() {
    local dir=$1 out=$2 comp=${3:-gzip}
    # write to a private temp name, then rename: concurrent builders never see partial files
    ( cd "$dir" && find . -mindepth 1 | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null ) |
        if [ "$comp" = gzip ]; then gzip -1 -n; else cat; fi > "$out.tmp.$$"
    mv -f "$out.tmp.$$" "$out"
}
