"""CA rollover through the pki role on Debian 13 (libvirt 11), on clones of
the converged KVM host and station with a copy of the controller's CA: after
every step (prepare, reissue on the host alone, reissue everywhere, finish)
the station logs in to libvirtd over TLS; at the end only the new CA is
trusted and a certificate of the old one is refused.
"""
import os
import re
import shutil
import sys
import time


sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import ansible_cli  # noqa: E402  pylint: disable=wrong-import-position
import clones  # noqa: E402  pylint: disable=wrong-import-position

sys.path.insert(0, os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep)[0])
from ansible_collections.secvirt.kvm.plugins.module_utils import x509, x509_crl  # noqa: E402 pylint: disable=wrong-import-position,import-error

VIRSH_TLS = "virsh -c qemu+tls://kvmhost.secvirt.test/system uri"
PASSPHRASE = os.environ.get("SECVIRT_DEMO_CA_PASSPHRASE", "")
# plain output: the recap lines are matched
NOCOLOR = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
LEAVES = {"kvmhost": ("/etc/pki/libvirt/servercert.pem", "/etc/pki/libvirt/clientcert.pem", "/etc/pki/qemu/server-cert.pem",
                      "/etc/pki/libvirt-vnc/server-cert.pem"),
          "station": ("/etc/pki/libvirt/clientcert.pem",)}
TRUST = {"kvmhost": ("/etc/pki/CA/cacert.pem", "/etc/pki/qemu/ca-cert.pem", "/etc/pki/libvirt-spice/ca-cert.pem"),
         "station": ("/etc/pki/CA/cacert.pem",)}


def _ca(path):
    with open(path, "rb") as handle:
        return x509.load_certificate(handle.read())


def _issuers(host, name, cas):
    """For each leaf certificate on the host, which of `cas` signed it."""
    out = set()
    for path in LEAVES[name]:
        cert = x509.load_certificate(host.file(path).content_string)
        out.update(label for label, ca in cas.items() if x509.signed_by(cert, ca))
    return out


def _trusted(host, name):
    """The CA fingerprints of each trust file on the host (all files must agree)."""
    seen = set()
    for path in TRUST[name]:
        bundle = x509_crl.load_ca_bundle(host.file(path).content_string)
        seen.add(tuple(sorted(x509.describe(c)["fingerprint"] for c in bundle)))
    assert len(seen) == 1, seen
    return set(seen.pop())


def _step(clone, ca_dir, phase, hosts="all"):
    role_vars = {"pki_ca_dir": ca_dir, "pki_ca_passphrase": PASSPHRASE, "pki_ca_rollover": phase}
    proc = ansible_cli.run_role("pki", hosts, role_vars=role_vars, inventory=clone.inventory, timeout=1200, env=NOCOLOR)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert PASSPHRASE not in proc.stdout + proc.stderr
    return proc


def _station_logs_in(station):
    res = station.run(VIRSH_TLS)
    assert res.rc == 0 and res.stdout.strip() == "qemu+tls://kvmhost.secvirt.test/system", res


def test_ca_rollover_keeps_the_station_connected_at_every_step(tmp_path):
    ca_dir = str(tmp_path / "ca")
    shutil.copytree(os.environ["SECVIRT_DEMO_CA_DIR"], ca_dir)
    old = _ca(os.path.join(ca_dir, "cacert.pem"))
    old_fp = x509.describe(old)["fingerprint"]
    with clones.cloned("rollover", ["kvmhost", "station"]) as clone:
        hosts = {name: clone.host(name) for name in ("kvmhost", "station")}
        station = hosts["station"]
        _station_logs_in(station)

        # prepare: a new CA on the controller, both trusted everywhere, every certificate unchanged
        _step(clone, ca_dir, "prepare")
        new = _ca(os.path.join(ca_dir, "next", "cacert.pem"))
        new_fp = x509.describe(new)["fingerprint"]
        assert new_fp != old_fp and new.subject == old.subject
        key = os.path.join(ca_dir, "next", "private", "cakey.pem")
        assert os.stat(key).st_mode & 0o777 == 0o600
        with open(key) as handle:
            assert "ENCRYPTED PRIVATE KEY" in handle.read()
        cas = {"old": old, "new": new}
        for name, host in hosts.items():
            assert _trusted(host, name) == {old_fp, new_fp}, name
            assert _issuers(host, name, cas) == {"old"}, name
        _station_logs_in(station)

        # reissue on the KVM host alone: a new-CA server, an old-CA client, both trust both
        _step(clone, ca_dir, "reissue", hosts="kvmhost")
        assert _issuers(hosts["kvmhost"], "kvmhost", cas) == {"new"}
        assert _issuers(station, "station", cas) == {"old"}
        _station_logs_in(station)

        # reissue everywhere
        _step(clone, ca_dir, "reissue")
        for name, host in hosts.items():
            assert _issuers(host, name, cas) == {"new"}, name
        _station_logs_in(station)

        # finish: the new CA is the CA, the old one archived on the controller and trusted nowhere
        done = _step(clone, ca_dir, "finish")
        assert "the previous CA was moved to " in done.stdout
        assert x509.describe(_ca(os.path.join(ca_dir, "cacert.pem")))["fingerprint"] == new_fp
        assert not os.path.exists(os.path.join(ca_dir, "next", "cacert.pem"))
        retired = os.listdir(os.path.join(ca_dir, "retired"))
        assert len(retired) == 1
        assert x509.describe(_ca(os.path.join(ca_dir, "retired", retired[0], "cacert.pem")))["fingerprint"] == old_fp
        for name, host in hosts.items():
            assert _trusted(host, name) == {new_fp}, name
        _station_logs_in(station)

        # the old CA is refused now: a client certificate it signs (made here,
        # with a throw-away key) fails against libvirtd, while the station's own succeeds
        _old_ca_client_is_refused(clone, os.path.join(ca_dir, "retired", retired[0]))
        _station_logs_in(station)

        # nothing left to do
        again = _step(clone, ca_dir, "finish")
        assert len(re.findall(r"^(?:kvmhost|station)\s+: ok=\d+\s+changed=0 ", again.stdout, re.M)) == 2, again.stdout[-2000:]


def _old_ca_client_is_refused(clone, retired):
    kvm, station = clone.host("kvmhost"), clone.host("station")
    ca_cert = _ca(os.path.join(retired, "cacert.pem"))
    with open(os.path.join(retired, "cakey.pem"), "rb") as handle:
        ca_key = x509.load_private_key(handle.read(), PASSPHRASE)
    from ansible_collections.secvirt.kvm.plugins.module_utils import x509_issue  # pylint: disable=import-outside-toplevel,import-error
    key = x509.generate_private_key("ecdsa-p256")
    subject = {"O": "secvirt-demo", "OU": "virtualization", "CN": "old-ca-client"}
    cert = x509_issue.issue_certificate(ca_key, ca_cert, key.public_key(), subject, [], [], "client", 2)
    pki = "/root/old-ca-pki"
    station.check_output("install -d -m 0700 %s" % pki)
    # the client trusts both CAs (libvirt's client refuses to present a
    # certificate its own CA file does not vouch for), so the server decides
    host_bundle = station.file("/etc/pki/CA/cacert.pem").content_string
    bundle = host_bundle + x509.certificate_pem(ca_cert).decode()
    for name, data, mode in (("clientcert.pem", x509.certificate_pem(cert).decode(), "0644"),
                             ("clientkey.pem", x509.private_key_pem(key).decode(), "0600"),
                             ("cacert.pem", bundle, "0644")):
        res = ansible_cli.run_module("station", "ansible.builtin.copy", {"content": data, "dest": "%s/%s" % (pki, name), "mode": mode},
                                     inventory=clone.inventory)
        assert not res["failed"], res
    since = kvm.check_output("date +%s")
    refused = station.run("virsh -c 'qemu+tls://kvmhost.secvirt.test/system?pkipath=%s' uri" % pki)
    assert refused.rc != 0 and "Unable to read TLS confirmation" in refused.stderr, refused
    journal = ""
    for _attempt in range(10):  # journald writes asynchronously
        journal = kvm.check_output("journalctl -u libvirtd --since @%s --no-pager -o cat" % since)
        if "known issuer" in journal:
            break
        time.sleep(1)
    assert "Certificate failed validation: The certificate hasn't got a known issuer." in journal, journal
