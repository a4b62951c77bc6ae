#!/usr/bin/env bash
# The QEMU that runs the test VMs (not the one inside them): on a Debian 12
# machine, whose own qemu is 7.2, fetch QEMU 10 from bookworm-backports into
# the cache and unpack it there (dpkg-deb -x). Nothing is installed on the
# machine, no apt source is added: apt runs with a private source list and
# private state under the cache. tests/harness/vm.py runs the VMs with
# "$cache/qemu/current" when it exists, else with the machine's qemu.
#
# Why: under TCG the test VMs spend ~80 % of the suite's CPU time, and
# QEMU 10.0 runs the same guest work faster than Debian 12's 7.2: Python
# imports x0.73, boot to SSH x0.59, fork+exec x0.16 (benchmarks/tcg_cpu;
# the suite: docs/testing.md, "The QEMU that runs the test VMs").
#
# Once unpacked, the copy is reused as it is (no network): delete
# "$cache/qemu" or set SECVIRT_QEMU_REFRESH=1 to fetch the backport's current
# version. A machine whose own qemu is already 10 or newer (Debian 13), or
# that is not Debian 12, uses its own. If the fetch fails the suite still
# runs, on the machine's qemu, and says so.
set -euo pipefail
cache=${SECVIRT_CACHE:-$HOME/.cache/secvirt-kvm}
home=$cache/qemu
say() { echo "fetch-qemu: $*" >&2; }

system_major=$(qemu-system-x86_64 --version | sed -n '1s/^QEMU emulator version \([0-9]*\)\..*/\1/p')
if [ "${system_major:-0}" -ge 10 ]; then
  say "the machine's qemu is version $system_major: the VMs run on it"
  rm -f "$home/current"
  exit 0
fi
codename=$(sed -n "s/^VERSION_CODENAME=//p" /etc/os-release)
if [ "$codename" != bookworm ]; then
  say "not Debian 12 ($codename): the VMs run on the machine's qemu $system_major"
  exit 0
fi
if [ -x "$home/current/usr/bin/qemu-system-x86_64" ] && [ "${SECVIRT_QEMU_REFRESH:-0}" != 1 ]; then
  say "using $(readlink "$home/current") (cached)"
  exit 0
fi

mirror=${SECVIRT_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
           | awk 'NR==1{print $2}' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
apt_dir=$home/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm-backports main" \
  >"$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir" -o "Dir::Cache::archives=$apt_dir/archives"
          -o APT::Sandbox::User=root -q)
fallback() {
  say "$1: the VMs run on the machine's qemu $system_major (slower: see docs/testing.md)"
  exit 0
}
apt-get "${apt_opts[@]}" update >"$apt_dir/update.log" 2>&1 || fallback "apt-get update of bookworm-backports failed"
# qemu 10 wants the backport's SeaBIOS (>> 1.16.3) and firmware files with it.
packages=(qemu-system-x86 qemu-system-common qemu-system-data seabios)
version=$(apt-cache "${apt_opts[@]}" show --no-all-versions qemu-system-x86/bookworm-backports 2>/dev/null \
          | sed -n 's/^Version: //p' | head -n 1)
[ -n "$version" ] || fallback "bookworm-backports has no qemu-system-x86"
dest=$home/${version//[:~+]/_}
if [ ! -f "$dest/.complete" ]; then
  rm -rf "$dest" "$apt_dir/archives"/*.deb
  (cd "$apt_dir/archives" && apt-get "${apt_opts[@]}" download "${packages[@]/%//bookworm-backports}") \
    >"$apt_dir/download.log" 2>&1 || fallback "downloading qemu $version failed"
  mkdir -p "$dest"
  for deb in "$apt_dir/archives"/*.deb; do dpkg-deb -x "$deb" "$dest"; done
  rm -f "$apt_dir/archives"/*.deb
  # It runs against the machine's libraries: prove it starts before using it.
  if ! out=$("$dest/usr/bin/qemu-system-x86_64" --version 2>&1); then
    rm -rf "$dest"
    fallback "qemu $version does not start here ($out)"
  fi
  touch "$dest/.complete"
fi
ln -sfn "${dest##*/}" "$home/current.new"
mv -T "$home/current.new" "$home/current"
say "using qemu $version from bookworm-backports ($dest)"
