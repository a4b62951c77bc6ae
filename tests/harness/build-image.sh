#!/usr/bin/env bash
# Build (once) the Debian 12 (or, with SECVIRT_SUITE=trixie, Debian 13) base
# image the molecule scenarios boot.
#
# Two disks share one kernel, initrd and SSH key:
# - disk.raw ("plain"): a minimal Debian install. The .debs the roles need
#   are only downloaded into its apt cache, so site.yml and the default
#   scenario install them themselves, without network round-trips.
# - disk-virt.raw ("virt"): the same, plus the virtualization stack
#   (packages.txt "virt" lines) installed here in the chroot at native
#   speed. Role scenarios boot it (platform key `image: virt`) because
#   unpacking libvirt and qemu under TCG costs many minutes per scenario;
#   their roles' package tasks still run and must report ok.
#
# - disk-station.raw ("station"): the plain one plus the "station" lines
#   (libvirt_remote's station: a Kerberos KDC and tcpdump, services off).
#
# Output: $SECVIRT_CACHE/images/<recipe-hash>/{disk.raw,disk-virt.raw,disk-station.raw,vmlinuz,initrd.img,id_ed25519}
# The hash covers this script, packages.txt and the suite, so any change to the recipe
# builds a new image and old ones are left for `make clean-cache`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${SECVIRT_CACHE:-$HOME/.cache/secvirt-kvm}
# SECVIRT_SUITE: bookworm (Debian 12, the default) or trixie (Debian 13).
suite=${SECVIRT_SUITE:-bookworm}
case $suite in
  bookworm) release=12 ;;
  trixie) release=13 ;;
  *) echo "build-image: unknown suite '$suite' (bookworm or trixie)" >&2; exit 2 ;;
esac
mirror=${SECVIRT_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
           | awk 'NR==1{print $2}' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
security_mirror=${mirror%/debian}/debian-security

recipe_hash=$( (cat "$0" "$here/packages.txt"; echo "suite=$suite") | sha256sum | cut -c1-16)
out="$cache/images/$recipe_hash"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
# Several scenarios (or sessions) may ask for the image at once: build once.
mkdir -p "$cache/images"
exec 9>"$cache/images/.build.lock"
flock 9
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi

for tool in debootstrap mkfs.ext4 qemu-img ssh-keygen chroot; do
  command -v "$tool" >/dev/null || { echo "build-image: '$tool' is missing (run: make setup)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "build-image: debootstrap needs root" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/secvirt-image.XXXXXX")
rootfs="$work/rootfs"
cleanup() {
  for m in dev/pts dev proc sys; do umount -l "$rootfs/$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# packages.txt: "base" lines are installed, "cache" lines only downloaded.
mapfile -t base < <(awk '$1=="base"{print $2}' "$here/packages.txt")
mapfile -t cached < <(awk '$1=="cache"{print $2}' "$here/packages.txt")
mapfile -t virt < <(awk '$1=="virt"{print $2}' "$here/packages.txt")
mapfile -t station < <(awk '$1=="station"{print $2}' "$here/packages.txt")
mapfile -t dormant < <(awk '$1=="dormant"{print $2}' "$here/packages.txt")

echo "build-image: debootstrap $suite from $mirror" >&2
debootstrap --variant=minbase \
  --include=apt-utils,systemd-sysv,udev,kmod,iproute2,ifupdown,isc-dhcp-client,openssh-server,python3,sudo,procps,ca-certificates,less \
  "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

cat >"$rootfs/etc/apt/sources.list" <<SRC
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
SRC
enter() {
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
  mount -t proc proc "$rootfs/proc"
  mount -t sysfs sys "$rootfs/sys"
  mount --bind /dev "$rootfs/dev"
  mount -t devpts devpts "$rootfs/dev/pts"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
}
leave() {
  rm -f "$rootfs/usr/sbin/policy-rc.d" "$rootfs/etc/resolv.conf"
  # Each VM makes its own machine-id at first boot.
  : >"$rootfs/etc/machine-id"
  rm -f "$rootfs/var/lib/dbus/machine-id"
  for m in dev/pts dev proc sys; do umount -l "$rootfs/$m"; done
}
enter

in_root() { chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends "${base[@]}" >"$work/apt.log" 2>&1 \
  || { tail -n 30 "$work/apt.log" >&2; exit 1; }
in_root apt-get install -y -qq --download-only "${cached[@]}" >>"$work/apt.log" 2>&1 \
  || { tail -n 30 "$work/apt.log" >&2; exit 1; }
# Keep downloaded .debs: Debian's docker-clean style hooks are not present, but
# make sure apt does not auto-clean the cache we seeded.
echo 'APT::Keep-Downloaded-Packages "true";' >"$rootfs/etc/apt/apt.conf.d/99keep-debs"

# System identity and access: root login by the harness key only.
mkdir -p "$out.tmp"
rm -f "$out.tmp/id_ed25519" "$out.tmp/id_ed25519.pub"
ssh-keygen -q -t ed25519 -N '' -C secvirt-harness -f "$out.tmp/id_ed25519"
install -d -m 0700 "$rootfs/root/.ssh"
install -m 0600 "$out.tmp/id_ed25519.pub" "$rootfs/root/.ssh/authorized_keys"
cat >"$rootfs/etc/ssh/sshd_config.d/harness.conf" <<SSHD
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
SSHD
# Regenerated per VM at first boot, Ed25519 only: "ssh-keygen -A" also makes
# an RSA-3072 key, whose prime search under TCG kept ssh-hostkeys.service
# running for minutes (seen on the console past the 420 s boot timeout).
rm -f "$rootfs"/etc/ssh/ssh_host_*
cat >"$rootfs/etc/systemd/system/ssh-hostkeys.service" <<UNIT
[Unit]
Description=Generate SSH host keys for this VM
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/ssh-hostkeys.service "$rootfs/etc/systemd/system/multi-user.target.wants/ssh-hostkeys.service"

echo "debian$release" >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 debian%s\n' "$release" >"$rootfs/etc/hosts"
printf '/dev/vda / ext4 errors=remount-ro 0 1\n' >"$rootfs/etc/fstab"
cat >"$rootfs/etc/network/interfaces" <<NET
source /etc/network/interfaces.d/*
auto lo
iface lo inet loopback
auto eth0
iface eth0 inet dhcp
# eth1 is the trunk/private test NIC: left unconfigured for the roles.
NET
# The machine-id is made per VM at first boot.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
ln -sf /dev/null "$rootfs/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$rootfs/etc/systemd/system/apt-daily-upgrade.timer"
ln -sf /dev/null "$rootfs/etc/systemd/system/e2scrub_reap.service"
echo 'root:*' | in_root chpasswd -e
in_root systemctl enable ssh >/dev/null
# ifupdown-pre only waits for `udevadm settle`, which costs ~35 s per boot
# under TCG; with net.ifnames=0 the NIC names do not depend on udev.
ln -sf /dev/null "$rootfs/etc/systemd/system/ifupdown-pre.service"

leave
cp -L "$rootfs"/boot/vmlinuz-* "$out.tmp/vmlinuz"
cp -L "$rootfs"/boot/initrd.img-* "$out.tmp/initrd.img"
chmod 0644 "$out.tmp/vmlinuz" "$out.tmp/initrd.img"
rm -f "$out.tmp/disk.raw" "$out.tmp/disk-virt.raw" "$out.tmp/disk-station.raw"
mkfs.ext4 -q -L root -d "$rootfs" "$out.tmp/disk.raw" 6G

# Packages whose services the tests start themselves are installed disabled.
disable_units() {
  local unit
  for unit in "$@"; do
    in_root systemctl disable "$unit" >/dev/null 2>&1 || true
  done
}

# The "station" disk: the plain one plus the station's test tools, built in a
# copy of the tree so the plain and virt disks do not get them.
if [ "${#station[@]}" -gt 0 ]; then
  echo "build-image: installing the station set: ${station[*]}" >&2
  cp -a "$rootfs" "$work/rootfs-plain"
  enter
  # the realm libvirt_remote's Kerberos test sets up, as an operator installing
  # a KDC would answer krb5-config's question (it writes kdc.conf's realm)
  echo 'krb5-config krb5-config/default_realm string SECVIRT.TEST' | in_root debconf-set-selections
  in_root apt-get install -y -qq --no-install-recommends "${station[@]}" >>"$work/apt.log" 2>&1 \
    || { tail -n 30 "$work/apt.log" >&2; exit 1; }
  disable_units krb5-kdc.service krb5-admin-server.service
  leave
  mkfs.ext4 -q -L root -d "$rootfs" "$out.tmp/disk-station.raw" 6G
  rm -rf "$rootfs"
  mv "$work/rootfs-plain" "$rootfs"
fi

# The "virt" disk: the plain one plus the virtualization stack.
echo "build-image: installing the virt set: ${virt[*]}" >&2
enter
in_root apt-get install -y -qq --no-install-recommends "${virt[@]}" >>"$work/apt.log" 2>&1 \
  || { tail -n 30 "$work/apt.log" >&2; exit 1; }
# The dormant set (packages.txt): installed, then switched off (every unit it
# ships disabled). The build fails if D-Bus could still activate one of them.
if [ "${#dormant[@]}" -gt 0 ]; then
  echo "build-image: installing the dormant set: ${dormant[*]}" >&2
  in_root apt-get install -y -qq "${dormant[@]}" >>"$work/apt.log" 2>&1 \
    || { tail -n 30 "$work/apt.log" >&2; exit 1; }
  for pkg in "${dormant[@]}"; do
    while read -r path; do
      case $path in
        /lib/systemd/system/*.service | /usr/lib/systemd/system/*.service) disable_units "${path##*/}" ;;
        /usr/share/dbus-1/system-services/*.service)
          echo "build-image: $pkg ships $path: D-Bus could activate it" >&2
          exit 1 ;;
      esac
    done < <(in_root dpkg-query -L "$pkg")
  done
fi
leave
mkfs.ext4 -q -L root -d "$rootfs" "$out.tmp/disk-virt.raw" 6G
cp "$here/packages.txt" "$out.tmp/packages.txt"
rm -rf "$out"
mv "$out.tmp" "$out"
touch "$out/.complete"
echo "$out"
