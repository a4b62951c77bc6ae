"""qemu_tls on Debian 12 (libvirt 9.0, QEMU 7.2), with the certificates the
pki role issued in this scenario: the management user kvmmgr's own VNC
client certificate (~/.pki/libvirt-vnc, made by pki_client_users) opens a
console over VeNCrypt/x509, a client without one is dropped, and a SPICE
console defined TLS-only listens on its TLS port only. The whole protocol
checks are in molecule/debian13/tests/test_qemu_tls.py; this is the same
role on the older libvirt.
"""
import base64
import json
import os
import re
import sys

import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import nested_guests  # noqa: E402  pylint: disable=wrong-import-position

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
KVM = RUNNER.get_host("kvmhost")
STATION = RUNNER.get_host("station")
VIRSH = nested_guests.VIRSH
LAB_IP = "10.254.0.10"
NAME = "kvmhost.secvirt.test"
PROBE = "/tmp/console_probe.py"


def _probe_as(user, port, mode, *args):
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "_harness", "console_probe.py"), "rb") as fh:
        encoded = base64.b64encode(fh.read()).decode()
    STATION.check_output("printf '%%s' %s | base64 -d > %s && chmod 0644 %s", encoded, PROBE, PROBE)
    cmd = "runuser -u %s -- python3 %s %s %d %s %s" % (user, PROBE, LAB_IP, port, mode, " ".join(args))
    return json.loads(STATION.check_output(cmd))


def test_vnc_takes_the_per_user_client_certificate_and_drops_a_client_without_one():
    guest = "tlsvnc12"
    nested_guests.define(KVM, guest, disk=False, devices="<graphics type='vnc' autoport='yes'/>")
    try:
        KVM.check_output(VIRSH + " start %s", guest)
        port = int(re.search(r"<graphics type='vnc' port='(\d+)'", KVM.check_output(VIRSH + " dumpxml %s", guest)).group(1))
        KVM.check_output(VIRSH + " qemu-monitor-command %s --hmp 'trace-event vnc_auth_fail on'", guest)
        home = "/home/kvmmgr"
        assert _probe_as("kvmmgr", port, "types")["types"] == [19]
        good = _probe_as("kvmmgr", port, "tls", "--ca", home + "/.pki/CA/cacert.pem", "--name", NAME,
                         "--cert", home + "/.pki/libvirt-vnc/clientcert.pem", "--key", home + "/.pki/libvirt-vnc/clientkey.pem")
        assert good["subtypes"] == ["x509none"] and good["step"] == "done", good
        assert good["desktop"]["name"] == "QEMU (%s)" % guest, good
        bare = _probe_as("kvmmgr", port, "tls", "--ca", home + "/.pki/CA/cacert.pem", "--name", NAME)
        assert bare["step"] == "security result" and "desktop" not in bare, bare
        log = KVM.check_output("cat /var/log/libvirt/qemu/%s.log", guest)
        assert "No certificate was found" in log, log[-2000:]
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
        handshake = STATION.run("echo | timeout 20 openssl s_client -connect %s:%s -CAfile /etc/pki/CA/cacert.pem "
                                "-verify_hostname %s -verify_return_error", LAB_IP, tls_port, NAME)
        assert "Verify return code: 0 (ok)" in handshake.stdout, handshake.stdout + handshake.stderr
    finally:
        nested_guests.remove(KVM, guest)
