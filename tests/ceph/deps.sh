#!/usr/bin/env bash
# Installs what the RBD backstore's build and tests need from Debian 12's
# packages (Ceph 16.2): librbd/librados to link, ceph-mon/ceph-osd/ceph-common
# for tests/ceph/cluster.sh. Nothing is done when they are all there.
set -euo pipefail
pkgs=(ceph-mon ceph-osd ceph-common librbd-dev librados-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "tests/ceph/deps.sh: installing ${missing[*]}" >&2
if [ "$(id -u)" != 0 ]; then
    echo "tests/ceph/deps.sh: not root; install them: apt-get install ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
