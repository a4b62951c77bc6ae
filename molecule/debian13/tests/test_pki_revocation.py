"""Revocation through the pki role on Debian 13 (libvirt 11): a stolen client
certificate is refused by the running libvirtd without a restart, the other
clients keep working, and the CRL is re-signed before it runs out.

Everything runs on copy-on-write clones of the converged KVM host and station
(molecule/_harness/clones.py), with a copy of the controller's CA directory:
the scenario's own machines and CA index are left as site.yml made them.
"""
import datetime
import json
import os
import re
import shutil
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import ansible_cli  # noqa: E402  pylint: disable=wrong-import-position
import clones  # noqa: E402  pylint: disable=wrong-import-position

# the collection as the suite installed it for ansible-playbook (Makefile: ANSIBLE_COLLECTIONS_PATH)
sys.path.insert(0, os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep)[0])
from ansible_collections.secvirt.kvm.plugins.module_utils import x509, x509_crl  # noqa: E402 pylint: disable=wrong-import-position,import-error

VIRSH_TLS = "virsh -c qemu+tls://kvmhost.secvirt.test/system uri"
PASSPHRASE = os.environ.get("SECVIRT_DEMO_CA_PASSPHRASE", "")
# plain output: the recap lines are matched
NOCOLOR = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
# Every place a TLS peer on these machines reads a CRL from (the role's
# README, "Revocation"): libvirt and its clients next to cacert.pem, QEMU in
# each of its x509 directories.
HOST_CRLS = ("/etc/pki/CA/cacrl.pem", "/etc/pki/qemu/ca-crl.pem", "/etc/pki/libvirt-vnc/ca-crl.pem",
             "/etc/pki/libvirt-spice/ca-crl.pem")


def _journal_since(host, since, unit, needle):
    text = ""
    for _attempt in range(10):  # journald writes asynchronously
        text = host.check_output("journalctl -u %s --since @%s --no-pager -o cat" % (unit, since))
        if needle in text:
            break
        time.sleep(1)
    return text


def _run_pki(clone, ca_dir, **role_vars):
    role_vars = dict({"pki_ca_dir": ca_dir, "pki_ca_passphrase": PASSPHRASE}, **role_vars)
    proc = ansible_cli.run_role("pki", "all", role_vars=role_vars, inventory=clone.inventory, timeout=1200, env=NOCOLOR)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert PASSPHRASE not in proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def revoked(tmp_path_factory):
    """The station's root client certificate revoked by the pki role, on clones."""
    ca_dir = str(tmp_path_factory.mktemp("revocation") / "ca")
    shutil.copytree(os.environ["SECVIRT_DEMO_CA_DIR"], ca_dir)
    with clones.cloned("revocation", ["kvmhost", "station"]) as clone:
        kvm, station = clone.host("kvmhost"), clone.host("station")
        serial = station.check_output("openssl x509 -noout -serial -in /etc/pki/libvirt/clientcert.pem").split("=")[1]
        # positive control before the run: the station logs in with that certificate
        assert station.run(VIRSH_TLS).rc == 0
        pid = kvm.check_output("systemctl show -P MainPID libvirtd")
        since = kvm.check_output("date +%s")
        proc = _run_pki(clone, ca_dir, pki_revoke=[{"name": "station/client", "reason": "key_compromise"}])
        yield dict(clone=clone, kvm=kvm, station=station, ca_dir=ca_dir, serial=serial.strip().lower().lstrip("0"),
                   pid=pid, since=since, proc=proc)


def test_a_revoked_client_certificate_is_refused_while_another_client_connects(revoked):
    kvm, station = revoked["kvm"], revoked["station"]
    since = kvm.check_output("date +%s")
    refused = station.run(VIRSH_TLS)
    assert refused.rc != 0 and "Unable to read TLS confirmation" in refused.stderr, refused
    journal = _journal_since(kvm, since, "libvirtd", "has been revoked")
    assert "Certificate failed validation: The certificate has been revoked." in journal, journal
    # positive control in the same test: the host's own client certificate, same CA, same daemon
    assert kvm.check_output(VIRSH_TLS).strip() == "qemu+tls://kvmhost.secvirt.test/system"
    # the daemon reloaded its TLS context (virt-admin server-update-tls); it was not restarted
    assert kvm.check_output("systemctl show -P MainPID libvirtd") == revoked["pid"]
    assert "secvirt.kvm.pki : Make the running libvirt daemon load the renewed certificates" in revoked["proc"].stdout


def test_the_crl_reaches_every_reader_and_lists_the_serial_with_its_reason(revoked):
    for path in HOST_CRLS:
        text = revoked["kvm"].check_output("openssl crl -in %s -noout -text" % path)
        assert re.search(r"Serial Number: 0*%s\s" % revoked["serial"].upper(), text), (path, text)
        assert "Key Compromise" in text
    qemu = revoked["kvm"].file("/etc/pki/qemu/ca-crl.pem")
    assert (qemu.user, qemu.group, qemu.mode) == ("root", "libvirt-qemu", 0o440)
    # the station checks the servers it talks to against the same CRL
    assert revoked["station"].file("/etc/pki/CA/cacrl.pem").content_string == \
        revoked["kvm"].file("/etc/pki/CA/cacrl.pem").content_string


def test_revocation_state_stays_on_the_controller(revoked):
    index_path = os.path.join(revoked["ca_dir"], "private", "index.json")
    assert os.stat(index_path).st_mode & 0o777 == 0o600
    with open(index_path) as handle:
        index = json.load(handle)
    assert index["revoked"][revoked["serial"]]["name"] == "station/client"
    assert index["revoked"][revoked["serial"]]["reason"] == "key_compromise"
    # every certificate of the play is recorded, so a lost host can be revoked by name later
    names = {rec["name"] for rec in index["issued"].values()}
    assert {"kvmhost/server", "kvmhost/qemu", "kvmhost/client", "station/client"} <= names, names
    for host in (revoked["kvm"], revoked["station"]):
        found = host.check_output("find / -xdev -name index.json -path '*pki*' 2>/dev/null || true")
        assert found.strip() == "", found


def test_a_crl_past_its_next_update_is_replaced_by_the_next_run(revoked, tmp_path):
    """Measured on libvirt 11.3 with GnuTLS (and libvirt 9.0): libvirtd keeps
    enforcing an expired CRL and does not refuse logins for it. OpenSSL-based
    peers do refuse ("CRL has expired"), so the role re-signs the CRL before
    its nextUpdate; here the CRL is planted expired and the next run must
    replace it."""
    clone, kvm = revoked["clone"], revoked["kvm"]
    planted = tmp_path / "expired.pem"
    # an expired CRL signed by the same CA key, still listing the revoked
    # serial, planted on the controller and the host
    ca_dir = revoked["ca_dir"]
    with open(os.path.join(ca_dir, "cacert.pem"), "rb") as cert, open(os.path.join(ca_dir, "private", "cakey.pem"), "rb") as key:
        ca_cert, ca_key = x509.load_certificate(cert.read()), x509.load_private_key(key.read(), PASSPHRASE)
    then = x509.utcnow() - datetime.timedelta(days=5)
    listed = {revoked["serial"]: {"reason": "key_compromise", "revoked_at": x509.iso(then)}}
    planted.write_bytes(x509_crl.crl_pem(x509_crl.sign_crl(ca_key, ca_cert, listed, 99, 3, now=then)))
    shutil.copyfile(str(planted), os.path.join(revoked["ca_dir"], "cacrl.pem"))
    res = ansible_cli.run_module("kvmhost", "ansible.builtin.copy",
                                 {"src": str(planted), "dest": "/etc/pki/CA/cacrl.pem", "mode": "0644"},
                                 inventory=clone.inventory)
    assert not res["failed"], res
    check = ("openssl verify -crl_check -CAfile /etc/pki/CA/cacert.pem -CRLfile /etc/pki/CA/cacrl.pem "
             "/etc/pki/libvirt/clientcert.pem 2>&1")
    broken = kvm.run(check)
    assert broken.rc != 0 and "CRL has expired" in broken.stdout, broken

    proc = _run_pki(clone, revoked["ca_dir"])
    assert re.search(r"CRL #\d+ signed anew \(expired on ", proc.stdout), proc.stdout[-3000:]
    assert kvm.check_output(check).endswith(": OK")
    next_update = kvm.check_output("openssl crl -in /etc/pki/CA/cacrl.pem -noout -nextupdate").split("=", 1)[1]
    assert time.strptime(next_update, "%b %d %H:%M:%S %Y GMT") > time.gmtime(time.time() + 20 * 86400)
    # the revocation survived the re-signing
    assert revoked["station"].run(VIRSH_TLS).rc != 0
    assert kvm.run(VIRSH_TLS).rc == 0
    # and a run with nothing to do changes nothing
    again = _run_pki(clone, revoked["ca_dir"])
    assert re.search(r"^(kvmhost|station)\s+: ok=\d+\s+changed=0 ", again.stdout, re.M), again.stdout[-2000:]
    assert len(re.findall(r"changed=0 ", again.stdout)) == 2, again.stdout[-2000:]
