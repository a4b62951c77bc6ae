"""Live migration over TLS between the scenario's two hypervisors (Debian 13,
libvirt 11.3, QEMU 10.0), as site.yml left them: kvmhost (10.254.0.10) and
kvmpeer (10.254.0.12), each with migrate_tls_force, its migration address on
the lab network and the other as its only allowed migration peer.

The guest is a tiny nested TCG guest without a disk (32 MiB of RAM to move).
Peer-to-peer migration: the source libvirtd connects to the destination's
libvirtd over TLS with its own client certificate (libvirt_remote), the
source QEMU streams to the destination QEMU's migration port over TLS with
/etc/pki/qemu (qemu_tls), checking the destination's certificate for its
migration_host.
"""
import os
import re
import sys

import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import ansible_cli  # noqa: E402  pylint: disable=wrong-import-position
import clones  # noqa: E402  pylint: disable=wrong-import-position
import nested_guests  # noqa: E402  pylint: disable=wrong-import-position

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
KVM = RUNNER.get_host("kvmhost")
PEER = RUNNER.get_host("kvmpeer")
VIRSH = nested_guests.VIRSH
NOCOLOR = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}


def _state(host, guest):
    return host.run(VIRSH + " domstate %s", guest).stdout.strip()


def _peer_accepts(host):
    """Packets the host's qemu_tls filter let in from a peer hypervisor to the migration ports."""
    chain = host.check_output("nft list chain inet secvirt_qemu_tls input")
    return int(re.search(r"ip saddr @peers_v4 tcp dport 49152-49215 counter packets (\d+)", chain).group(1))


def _migrate(source, guest, dest, tls=True):
    return source.run(VIRSH + " migrate --live --p2p" + (" --tls" if tls else "") + " %s qemu+tls://%s.secvirt.test/system",
                      guest, dest)


def test_live_migration_needs_tls_and_goes_over_the_migration_ports():
    guest = "migrant"
    nested_guests.define(KVM, guest, disk=False)
    try:
        KVM.check_output(VIRSH + " start %s", guest)
        # without --tls: refused by the source's migrate_tls_force, the guest stays where it was
        plain = _migrate(KVM, guest, "kvmpeer", tls=False)
        assert plain.rc != 0, plain.stdout
        assert "this libvirtd instance allows migration only with VIR_MIGRATE_TLS flag" in plain.stderr, plain.stderr
        assert _state(KVM, guest) == "running"

        # positive control: with --tls it moves, and the stream came in through the peer rule of kvmpeer's filter
        before = _peer_accepts(PEER)
        there = _migrate(KVM, guest, "kvmpeer")
        assert there.rc == 0, there.stderr
        assert _state(PEER, guest) == "running"
        assert _state(KVM, guest) == "shut off"        # still defined on the source, not running
        assert _peer_accepts(PEER) > before
        # the destination QEMU's certificate was checked for kvmpeer's migration_host: its address is in it
        assert "IP Address:10.254.0.12" in PEER.check_output(
            "openssl x509 -in /etc/pki/qemu/server-cert.pem -noout -ext subjectAltName")

        # and back: kvmpeer refuses a plain migration as well, and migrates over TLS
        assert "allows migration only with VIR_MIGRATE_TLS flag" in _migrate(PEER, guest, "kvmhost", tls=False).stderr
        back = _migrate(PEER, guest, "kvmhost")
        assert back.rc == 0, back.stderr
        assert _state(KVM, guest) == "running"
    finally:
        nested_guests.remove(PEER, guest)
        nested_guests.remove(KVM, guest)


def test_migration_without_shared_storage_copies_the_disk_over_nbd_with_tls():
    """--copy-storage-all: the destination QEMU serves an NBD export the
    source writes the disk into. The QMP command kvmpeer's libvirtd sent to
    start that NBD server (logged for this test through virt-admin) names
    the TLS credentials, and the disk arrives whole."""
    guest = "diskmigrant"
    marker = "secvirt-nbd-%s" % os.urandom(6).hex()
    image = "%s/%s.img" % (nested_guests.IMAGES, guest)
    log = "/var/log/libvirt/secvirt-qmp-test.log"
    nested_guests.define(KVM, guest, disk=True)
    KVM.check_output("printf %s | dd of=%s bs=1 seek=4096 conv=notrunc status=none", marker, image)
    # no shared storage: the destination's disk is a blank file of the same size
    PEER.check_output("truncate -s 1M %s && chmod 0600 %s", image, image)
    filters = PEER.check_output("virt-admin daemon-log-filters").split(":", 1)[-1].strip()
    outputs = PEER.check_output("virt-admin daemon-log-outputs").split(":", 1)[-1].strip()
    try:
        PEER.check_output("virt-admin daemon-log-filters '1:qemu.qemu_monitor' && "
                          "virt-admin daemon-log-outputs '1:file:%s'", log)
        KVM.check_output(VIRSH + " start %s", guest)
        moved = KVM.run(VIRSH + " migrate --live --p2p --tls --copy-storage-all %s qemu+tls://kvmpeer.secvirt.test/system", guest)
        assert moved.rc == 0, moved.stderr
        assert _state(PEER, guest) == "running"
        assert PEER.run("grep -c -a -F %s %s", marker, image).stdout.strip() == "1"   # the disk came along
        starts = [line for line in PEER.check_output("cat %s", log).splitlines() if '"execute":"nbd-server-start"' in line]
        assert starts, "kvmpeer's libvirtd started no NBD server"
        assert all('"tls-creds":' in line and '"host":"10.254.0.12"' in line for line in starts), starts
    finally:
        PEER.run("virt-admin daemon-log-filters %s; virt-admin daemon-log-outputs %s; rm -f %s",
                 filters, outputs or "3:journald", log)
        nested_guests.remove(PEER, guest)
        nested_guests.remove(KVM, guest)


def test_a_pair_whose_destination_certificate_lacks_the_name_is_refused_before_any_change():
    """On clones of both hypervisors: kvmpeer asks to be reached at a name its
    QEMU certificate does not hold. Both ends of that pair stop in the
    preflight, naming it, and nothing changes; the same run without that
    name passes (changed=0, the clones are converged)."""
    with clones.cloned("migration-pairs", ["kvmhost", "kvmpeer"]) as clone:
        hosts = {name: clone.host(name) for name in ("kvmhost", "kvmpeer")}
        before = {name: host.check_output("sha256sum /etc/libvirt/qemu.conf") for name, host in hosts.items()}
        bad = ansible_cli.run_role(
            "qemu_tls", "kvm_hosts", inventory=clone.inventory, env=NOCOLOR,
            role_vars={"qemu_tls_migration_host":
                       "{{ 'kvmpeer-migration.secvirt.test' if inventory_hostname == 'kvmpeer' else qemu_tls_migration_address }}"})
        assert bad.returncode != 0, bad.stdout[-3000:]
        flat = " ".join((bad.stdout + bad.stderr).split())  # ansible-core 2.19 prints task errors on stderr
        assert re.search(r"kvmhost\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", bad.stdout), bad.stdout[-3000:]
        assert re.search(r"kvmpeer\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", bad.stdout), bad.stdout[-3000:]
        assert ("kvmhost -> kvmpeer (kvmpeer-migration.secvirt.test): kvmpeer-migration.secvirt.test is not in "
                "kvmpeer's QEMU certificate") in flat, flat[-3000:]
        assert "kvmpeer -> kvmhost" not in flat                   # the other direction is fine
        for name, host in hosts.items():
            assert host.check_output("sha256sum /etc/libvirt/qemu.conf") == before[name], name

        good = ansible_cli.run_role("qemu_tls", "kvm_hosts", inventory=clone.inventory, env=NOCOLOR)
        assert good.returncode == 0, good.stdout[-3000:]
        for name in hosts:
            assert re.search(r"%s\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0" % name, good.stdout), good.stdout[-3000:]
