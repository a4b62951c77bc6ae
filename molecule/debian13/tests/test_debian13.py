"""site.yml on Debian 13 (trixie, libvirt 11): what it put in force, measured
on the machines themselves. Each check is independent of the others."""
import os
import re
import time

import testinfra.utils.ansible_runner

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
