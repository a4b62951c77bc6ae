"""migration_pairs: every source must accept every destination's QEMU
certificate (name in the subjectAltName, issued by the source's CA, serverAuth),
checked on real certificates signed by throw-away CAs."""
import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.secvirt.kvm.plugins.filter.migration_pairs import migration_pairs

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "secvirt-test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn="CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    return key, cert


def _server(ca, dns=(), ips=(), eku=ExtendedKeyUsageOID.SERVER_AUTH):
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    builder = (x509.CertificateBuilder().subject_name(_name(dns[0] if dns else "host")).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(NOW)
               .not_valid_after(NOW + datetime.timedelta(days=1))
               .add_extension(x509.SubjectAlternativeName(sans), critical=False)
               .add_extension(x509.ExtendedKeyUsage([eku]), critical=False))
    return builder.sign(ca_key, hashes.SHA256())


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _pair(name, cert, ca_cert):
    return {"source": "kvm1", "destination": "kvm2", "name": name, "certificate": _pem(cert), "ca": _pem(ca_cert)}


def test_a_name_or_address_in_the_certificate_from_the_same_ca_passes():
    ca = _ca()
    cert = _server(ca, dns=["kvm2.example.test"], ips=["192.0.2.12"])
    assert migration_pairs([_pair("kvm2.example.test", cert, ca[1]), _pair("KVM2.example.test.", cert, ca[1]),
                            _pair("192.0.2.12", cert, ca[1])]) == []


def test_a_name_missing_from_the_certificate_is_refused_naming_the_pair():
    ca = _ca()
    cert = _server(ca, dns=["kvm2.example.test"], ips=["192.0.2.12"])
    [problem] = migration_pairs([_pair("198.51.100.12", cert, ca[1])])
    assert problem.startswith("kvm1 -> kvm2 (198.51.100.12): 198.51.100.12 is not in kvm2's QEMU certificate")
    assert "192.0.2.12" in problem and "kvm2.example.test" in problem


def test_a_certificate_of_another_ca_with_the_same_subject_is_refused():
    ca, impostor = _ca("CA"), _ca("CA")
    cert = _server(impostor, dns=["kvm2.example.test"])
    [problem] = migration_pairs([_pair("kvm2.example.test", cert, ca[1])])
    assert "was not issued by a CA in kvm1's ca-cert.pem" in problem
    # a bundle with both CAs (a CA rollover) accepts it
    bundle = _pair("kvm2.example.test", cert, ca[1])
    bundle["ca"] += _pem(impostor[1])
    assert migration_pairs([bundle]) == []


def test_a_client_only_certificate_is_refused():
    ca = _ca()
    cert = _server(ca, dns=["kvm2.example.test"], eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    assert migration_pairs([_pair("kvm2.example.test", cert, ca[1])]) == [
        "kvm1 -> kvm2 (kvm2.example.test): kvm2's QEMU certificate lacks the serverAuth key usage"]
