"""qemu_tls on Debian 12 (libvirt 9.0, QEMU 7.2), with the certificates the
pki role issued in this scenario: the management user kvmmgr's own VNC
client certificate (~/.pki/libvirt-vnc, made by pki_client_users) and
kvmmgr's console login (qemu_tls_vnc_sasl, SCRAM-SHA-256 inside the TLS
session) open a console over VeNCrypt/x509sasl; a wrong password, and a
client without a certificate, are dropped with QEMU's reason. A SPICE
console defined TLS-only listens on its TLS port only, and kvmmgr's SPICE
trust store (~/.spicec/spice_truststore.pem, read by remote-viewer)
verifies it for the console address. The whole protocol
checks are in molecule/debian13/tests/test_qemu_tls.py; this is the same
role on the older libvirt.
"""
import json
import os
import re
import sys

import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import ansible_cli  # noqa: E402  pylint: disable=wrong-import-position
import clones  # noqa: E402  pylint: disable=wrong-import-position
import consoles  # noqa: E402  pylint: disable=wrong-import-position
import nested_guests  # noqa: E402  pylint: disable=wrong-import-position

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
KVM = RUNNER.get_host("kvmhost")
STATION = RUNNER.get_host("station")
VIRSH = nested_guests.VIRSH
LAB_IP = "10.254.0.10"
NAME = "kvmhost.secvirt.test"
# molecule/pki/converge.yml (test-only secret)
VNC_PASSWORD = "molecule-only-Vnc-login-3f9a"


def _probe_as(user, port, mode, *args, password=None):
    consoles.push_probe(STATION)
    return consoles.probe(STATION, LAB_IP, port, mode, *args, user=user, password=password)


def _guest_log(guest, needle):
    return consoles.guest_log(KVM, guest, needle)


def test_vnc_takes_the_per_user_certificate_and_login_and_drops_a_wrong_password_or_no_certificate():
    guest = "tlsvnc12"
    nested_guests.define(KVM, guest, disk=False, devices="<graphics type='vnc' autoport='yes'/>")
    try:
        KVM.check_output(VIRSH + " start %s", guest)
        port = int(re.search(r"<graphics type='vnc' port='(\d+)'", KVM.check_output(VIRSH + " dumpxml %s", guest)).group(1))
        KVM.check_output(VIRSH + " qemu-monitor-command %s --hmp 'trace-event vnc_auth_fail on'", guest)
        home = "/home/kvmmgr"
        trust = ["--ca", home + "/.pki/CA/cacert.pem", "--name", NAME]
        cert = ["--cert", home + "/.pki/libvirt-vnc/clientcert.pem", "--key", home + "/.pki/libvirt-vnc/clientkey.pem"]
        assert _probe_as("kvmmgr", port, "types")["types"] == [19]
        good = _probe_as("kvmmgr", port, "tls", *trust, *cert, "--user", "kvmmgr", password=VNC_PASSWORD)
        assert good["subtypes"] == ["x509sasl"] and good["sasl_mechs"] == ["SCRAM-SHA-256"], good
        assert good["step"] == "done" and good["desktop"]["name"] == "QEMU (%s)" % guest, good
        # the certificate alone no longer opens the console
        no_login = _probe_as("kvmmgr", port, "tls", *trust, *cert)
        assert no_login["step"] == "sasl" and "desktop" not in no_login, no_login
        wrong = _probe_as("kvmmgr", port, "tls", *trust, *cert, "--user", "kvmmgr", password=VNC_PASSWORD + "x")
        assert wrong["step"] == "sasl" and "desktop" not in wrong, wrong
        assert re.search(r"Cannot step SASL auth reason=SASL\(-13\): authentication failure",
                         _guest_log(guest, "Cannot step SASL auth")), "QEMU did not say why it dropped the client"
        bare = _probe_as("kvmmgr", port, "tls", *trust, "--user", "kvmmgr", password=VNC_PASSWORD)
        assert bare["step"] == "sasl mechlist" and "desktop" not in bare, bare
        assert "No certificate was found" in _guest_log(guest, "No certificate was found")
        # the console users' database: QEMU's group reads it, nobody else; no password in it
        assert KVM.check_output("stat -c '%U:%G %a' /etc/sasl2/qemu-vnc-passwd.db").strip() == "root:libvirt-qemu 640"
        assert KVM.run("grep -c -a -F %s /etc/sasl2/qemu-vnc-passwd.db", VNC_PASSWORD).stdout.strip() == "0"
    finally:
        nested_guests.remove(KVM, guest)


def test_spice_secure_guest_listens_on_its_tls_port_only():
    guest = "tlsspice12"
    nested_guests.define(KVM, guest, disk=False, devices="<graphics type='spice' autoport='yes' defaultMode='secure'/>")
    try:
        KVM.check_output(VIRSH + " start %s", guest)
        tls_port = re.search(r"tlsPort='(\d+)'", KVM.check_output(VIRSH + " dumpxml %s", guest)).group(1)
        pid = KVM.check_output("cat /run/libvirt/qemu/%s.pid", guest).strip()
        listening = KVM.check_output("ss -Htlnp | grep 'pid=%s,' || true", pid)
        assert re.findall(r"\S+:(\d+)\s", listening) == [tls_port], listening
        # as remote-viewer would: kvmmgr's SPICE trust store, the address it connects to checked against the SAN
        handshake = STATION.run("echo | timeout 20 runuser -u kvmmgr -- openssl s_client -connect %s:%s "
                                "-CAfile /home/kvmmgr/.spicec/spice_truststore.pem -verify_ip %s -verify_return_error",
                                LAB_IP, tls_port, LAB_IP)
        assert "Verify return code: 0 (ok)" in handshake.stdout, handshake.stdout + handshake.stderr
        # ... and a trust store without our CA fails the same handshake: the chain QEMU sends ends in a CA it does not hold
        STATION.check_output("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /tmp/other-ca.key "
                             "-out /tmp/other-ca.pem -subj '/O=secvirt-test/CN=other CA' -days 2")
        foreign = STATION.run("echo | timeout 20 openssl s_client -connect %s:%s -CAfile /tmp/other-ca.pem "
                              "-verify_ip %s -verify_return_error", LAB_IP, tls_port, LAB_IP)
        assert foreign.rc != 0 and "Verify return code: 19 (self-signed certificate in certificate chain)" in foreign.stdout, \
            foreign.stdout + foreign.stderr
    finally:
        nested_guests.remove(KVM, guest)
        STATION.run("rm -f /tmp/other-ca.key /tmp/other-ca.pem")


def test_on_libvirt_9_a_renewed_vnc_certificate_lists_the_running_guest_until_it_restarts():
    """On a clone of the KVM host: libvirt 9.0 cannot reload a running
    guest's console certificate (virDomainGraphicsReload came in 10.2), so
    after the pki role renewed it, qemu_tls names the guest as serving the
    old one (a fact and a warning) and reloads nothing, run after run; the
    guest is not restarted behind the user's back."""
    guest = "stale12"
    role_vars = {"qemu_tls_console_listen": "{{ ansible_local['secvirt_lab']['ip'] }}",
                 "qemu_tls_migration_address": "{{ ansible_local['secvirt_lab']['ip'] }}",
                 "qemu_tls_management_cidrs": ["10.254.0.0/24"], "qemu_tls_vnc_sasl": True,
                 "qemu_tls_vnc_sasl_users": [{"name": "kvmmgr", "password": VNC_PASSWORD}]}
    json_out = {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_NOCOLOR": "1"}
    with clones.cloned("qemu-tls-stale", ["kvmhost"]) as clone:
        host = clone.host("kvmhost")
        nested_guests.define(host, guest, disk=False, devices="<graphics type='vnc' autoport='yes'/>")
        host.check_output(VIRSH + " start %s", guest)
        pid = host.check_output("cat /run/libvirt/qemu/%s.pid", guest).strip()
        before = host.check_output("sha256sum /etc/pki/libvirt-vnc/server-cert.pem")
        renew = ansible_cli.run_role("pki", "kvm_hosts", inventory=clone.inventory, extra_vars={"pki_force_renew": True})
        assert renew.returncode == 0, renew.stdout[-3000:] + renew.stderr[-2000:]
        assert host.check_output("sha256sum /etc/pki/libvirt-vnc/server-cert.pem") != before
        for attempt in ("first", "second"):
            run = ansible_cli.run_role("qemu_tls", "kvm_hosts", inventory=clone.inventory, env=json_out, role_vars=role_vars)
            assert run.returncode == 0, (attempt, run.stdout[-3000:] + run.stderr[-2000:])
            graphics = [task["hosts"]["kvmhost"] for play in json.loads(run.stdout)["plays"] for task in play["tasks"]
                        if task["task"]["name"].endswith("reload renewed VNC certificates")][-1]
            assert graphics["can_reload"] is False and graphics["reloaded"] == [], (attempt, graphics)
            assert graphics["stale_certificate"] == [guest] and guest in graphics["restart_needed"], (attempt, graphics)
            assert not graphics["changed"], (attempt, graphics)
            warning = "guest %s keeps serving an older console certificate until it is restarted" % guest
            assert any(warning in w for w in graphics.get("warnings", [])), (attempt, graphics)
        assert host.check_output("cat /run/libvirt/qemu/%s.pid", guest).strip() == pid    # not restarted
