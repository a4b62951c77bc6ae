"""site.yml on Debian 13 (trixie, libvirt 11): what it put in force, measured
on the machines themselves. Each check is independent of the others."""
import os
import re
import sys
import time

import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import nested_guests  # noqa: E402  pylint: disable=wrong-import-position

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
KVM = RUNNER.get_host("kvmhost")
STATION = RUNNER.get_host("station")
VIRSH_TLS = "virsh -c qemu+tls://kvmhost.secvirt.test/system "


def test_both_machines_run_debian_13_with_libvirt_11():
    for machine in (KVM, STATION):
        assert machine.file("/etc/debian_version").content_string.startswith("13.")
    version = KVM.check_output("dpkg-query -W -f '${Version}' libvirt-daemon-system")
    assert int(version.split(".")[0]) >= 11, version


def test_station_manages_the_host_over_tls_with_its_certificate():
    out = STATION.check_output(VIRSH_TLS + "uri")
    assert out.strip() == "qemu+tls://kvmhost.secvirt.test/system"
    assert "Name" in STATION.check_output(VIRSH_TLS + "list --all")
    # the alias the libvirt_client role wrote resolves to the same URI
    assert STATION.check_output("virsh -c kvmhost uri").strip() == "qemu+tls://kvmhost.secvirt.test/system"


def test_a_client_without_a_certificate_is_refused_by_the_daemon():
    # positive control: the station's own certificate logs in
    assert STATION.run(VIRSH_TLS + "uri").rc == 0
    since = KVM.check_output("date +%s")
    # the same server, without a client certificate: the server's certificate
    # verifies, then libvirtd ends the session and says why in its journal
    res = STATION.run("echo | timeout 30 openssl s_client -connect kvmhost.secvirt.test:16514 "
                      "-CAfile /etc/pki/CA/cacert.pem 2>&1")
    assert "Verify return code: 0 (ok)" in res.stdout, res.stdout
    journal = ""
    for _attempt in range(10):  # journald writes asynchronously
        journal = KVM.check_output("journalctl -u libvirtd --since @%s --no-pager -o cat" % since)
        if "No certificate was found" in journal:
            break
        time.sleep(1)
    assert "Unable to verify TLS peer: No certificate was found" in journal, journal


def test_only_tls_listens_and_the_port_filter_is_loaded():
    listening = KVM.check_output("ss -Hltn '( sport = :16514 or sport = :16509 )'")
    assert ":16514" in listening and ":16509" not in listening
    table = KVM.check_output("nft list table inet secvirt_libvirt_remote")
    assert "10.254.0.0/24" in table and "16514" in table


def test_server_certificate_chains_to_the_ca_and_names_the_host():
    out = KVM.check_output("openssl verify -CAfile /etc/pki/CA/cacert.pem /etc/pki/libvirt/servercert.pem")
    assert out.endswith(": OK")
    text = KVM.check_output("openssl x509 -in /etc/pki/libvirt/servercert.pem -noout -ext subjectAltName")
    assert "DNS:kvmhost.secvirt.test" in text
    assert KVM.file("/etc/pki/libvirt/private/serverkey.pem").mode == 0o600


def test_audit_rules_are_loaded_and_libvirt_audits():
    rules = KVM.check_output("auditctl -l")
    assert len(re.findall(r"key=virt_|-k virt_", rules)) >= 10, rules
    assert re.search(r"^enabled [12]$", KVM.check_output("auditctl -s"), re.M)
    assert re.search(r"^audit_level = 1$", KVM.file("/etc/libvirt/libvirtd.conf").content_string, re.M)


def test_guest_volume_is_an_open_luks2_argon2id_volume():
    dump = KVM.check_output("cryptsetup luksDump /dev/vg_guests/guest01_luks")
    assert "Version:       \t2" in dump or re.search(r"Version:\s+2", dump)
    assert "argon2id" in dump
    assert KVM.check_output("lsblk -nro NAME,TYPE /dev/mapper/guest01").split() == ["guest01", "crypt"]


def test_vlan_bridges_carry_their_vlans_and_the_default_network_is_gone():
    for bridge, vlan in (("br-web", 100), ("br-db", 200)):
        link = KVM.check_output("ip -d -o link show eth1.%d" % vlan)
        assert "vlan protocol 802.1Q id %d" % vlan in link and "master %s" % bridge in link
    networks = KVM.check_output("virsh -q -c qemu:///system net-list --all --name")
    assert "default" not in networks.split()


def test_two_guests_run_confined_and_cannot_read_each_others_image():
    """The hypervisor role on libvirt 11: two guests started after site.yml."""
    names = ("d13guesta", "d13guestb")
    try:
        for name in names:
            nested_guests.define(KVM, name)
            KVM.check_output(nested_guests.VIRSH + " start %s", name)
        procs = {name: nested_guests.qemu_process(KVM, name) for name in names}
        nested_guests.assert_confined(KVM, procs)
        profile = "libvirt-" + procs["d13guesta"]["uuid"]
        own = KVM.run("aa-exec -p %s -- head -c 512 %s/d13guesta.img | wc -c", profile, nested_guests.IMAGES)
        assert own.rc == 0 and own.stdout.strip() == "512", own          # positive control
        other = KVM.run("aa-exec -p %s -- head -c 512 %s/d13guestb.img", profile, nested_guests.IMAGES)
        assert other.rc != 0 and "Permission denied" in other.stderr, other
    finally:
        for name in names:
            nested_guests.remove(KVM, name)


def test_an_unconfined_guest_is_refused_on_libvirt_11():
    nested_guests.define(KVM, "d13unconfined", disk=False, seclabel="<seclabel type='none'/>")
    nested_guests.define(KVM, "d13confined", disk=False)
    try:
        refused = KVM.run(nested_guests.VIRSH + " start d13unconfined")
        assert refused.rc != 0 and "Unconfined guests are not allowed on this host" in refused.stderr, refused
        assert KVM.run(nested_guests.VIRSH + " start d13confined").rc == 0       # positive control
    finally:
        nested_guests.remove(KVM, "d13unconfined")
        nested_guests.remove(KVM, "d13confined")


def test_hypervisor_sysctls_and_ksm_in_force():
    for key, value in (("kernel.unprivileged_bpf_disabled", "1"), ("kernel.kptr_restrict", "2"),
                       ("kernel.yama.ptrace_scope", "2"), ("vm.unprivileged_userfaultfd", "0")):
        assert KVM.check_output("cat /proc/sys/%s", key.replace(".", "/")).strip() == value, key
    assert KVM.check_output("cat /sys/kernel/mm/ksm/run").strip() == "0"
    assert "/dev/userfaultfd" in KVM.file("/etc/libvirt/qemu.conf").content_string   # the trixie device list
