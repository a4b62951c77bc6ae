"""x509, x509_issue, x509_files: CA creation, issuance, renewal decisions, chain and key checks.

Runs under the controller's cryptography and, unchanged, under Debian 12's
cryptography 38 (the managed hosts' version).
"""
import base64
import datetime
import os
import stat

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.secvirt.kvm.plugins.module_utils import x509 as x
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_files as xf
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_issue as xi

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
CA_SUBJECT = {'O': 'secvirt', 'CN': 'secvirt'}
HOST_SUBJECT = {'C': 'DE', 'O': 'secvirt', 'CN': 'kvm01.example.org'}
DNS = ['kvm01.example.org', 'kvm01']
IPS = ['10.0.0.1']


@pytest.fixture(scope='module')
def ca():
    return x.create_ca('ecdsa-p384', CA_SUBJECT, 3650, now=NOW)


@pytest.fixture(scope='module')
def other_ca():
    return x.create_ca('ecdsa-p256', CA_SUBJECT, 3650, now=NOW)


@pytest.fixture(scope='module')
def host_key():
    return x.generate_private_key('ecdsa-p256')


@pytest.fixture(scope='module')
def rsa_key():
    return x.generate_private_key('rsa-3072')


def issue(ca, key, subject=None, dns=None, ip=None, profile='server', days=365, now=NOW):
    return xi.issue_certificate(ca[0], ca[1], key.public_key(), subject or HOST_SUBJECT,
                                DNS if dns is None else dns, IPS if ip is None else ip, profile, days, now=now)


def request(key, name='kvm01/server', **kw):
    req = dict(name=name, csr=x.csr_pem(x.build_csr(key, {'CN': 'kvm01.example.org'}, DNS)).decode(),
               profile='server', subject=HOST_SUBJECT, dns=DNS, ip=IPS, current='')
    req.update(kw)
    return req


# --- keys -----------------------------------------------------------------

@pytest.mark.parametrize('key_type', ['ecdsa-p256', 'ecdsa-p384'])
def test_generate_ec_keys(key_type):
    key = x.generate_private_key(key_type)
    assert x.key_type_of(key) == key_type
    assert x.key_type_of(key.public_key()) == key_type


def test_generate_rsa_key(rsa_key):
    assert x.key_type_of(rsa_key) == 'rsa-3072'
    x.check_key_strength(rsa_key.public_key())


def test_unknown_key_type_is_refused():
    with pytest.raises(x.X509Error, match='unknown key type'):
        x.generate_private_key('dsa-1024')


def test_key_type_of_other_algorithms():
    assert x.key_type_of(ed25519.Ed25519PrivateKey.generate()) is None
    assert x.key_type_of(ec.generate_private_key(ec.SECP521R1())) == 'ecdsa-p521'
    assert x.key_type_of(ec.generate_private_key(ec.SECP256K1())) == 'ecdsa-secp256k1'


def test_weak_keys_are_refused():
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(x.X509Error, match='2048 bits is too weak'):
        x.check_key_strength(small.public_key())
    x.check_key_strength(small.public_key(), min_rsa_bits=2048)
    with pytest.raises(x.X509Error, match='curve secp256k1'):
        x.check_key_strength(ec.generate_private_key(ec.SECP256K1()).public_key())
    with pytest.raises(x.X509Error, match='not accepted'):
        x.check_key_strength(ed25519.Ed25519PrivateKey.generate().public_key())


def test_encrypted_key_round_trip(host_key):
    pem = x.private_key_pem(host_key, 'correct horse')
    assert pem.startswith(b'-----BEGIN ENCRYPTED PRIVATE KEY-----')
    assert x.is_encrypted_pem(pem)
    assert x.keys_match(x.load_private_key(pem, 'correct horse'), host_key)
    with pytest.raises(x.X509Error, match='wrong passphrase'):
        x.load_private_key(pem, 'wrong')
    with pytest.raises(x.X509Error, match='private key'):
        x.load_private_key(pem)


def test_plain_key_round_trip(host_key):
    pem = x.private_key_pem(host_key)
    assert pem.startswith(b'-----BEGIN PRIVATE KEY-----')
    assert not x.is_encrypted_pem(pem)
    assert x.keys_match(x.load_private_key(pem.decode()), host_key)
    with pytest.raises(x.X509Error):
        x.load_private_key(b'garbage')


def test_fingerprint_is_the_same_for_key_csr_and_certificate(ca, host_key):
    fp = x.public_key_fingerprint(host_key)
    assert len(fp) == 95 and fp.count(':') == 31
    assert x.public_key_fingerprint(x.build_csr(host_key, {'CN': 'a.b'}).public_key()) == fp
    assert x.describe(issue(ca, host_key))['public_key_fingerprint'] == fp


# --- names and SANs -----------------------------------------------------------

def test_build_name_keeps_certificate_order():
    name = x.build_name({'C': 'US', 'L': 'Austin', 'O': 'IBM', 'OU': ['a', 'b'], 'CN': 'root'})
    assert [a.oid for a in name] == [NameOID.COUNTRY_NAME, NameOID.LOCALITY_NAME, NameOID.ORGANIZATION_NAME,
                                     NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
                                     NameOID.COMMON_NAME]
    # RFC 4514: last RDN first, as GnuTLS prints it for tls_allowed_dn_list
    assert x.name_to_string(name) == 'CN=root,OU=b,OU=a,O=IBM,L=Austin,C=US'
    assert x.common_name(name) == 'root'
    assert x.common_name(x.build_name({'O': 'x'})) is None


@pytest.mark.parametrize('subject,match', [
    ({}, 'must not be empty'),
    ('CN=x', 'must be a mapping'),
    ({'XX': 'y'}, 'unknown subject attribute'),
    ({'CN': ''}, 'is empty'),
    ({'C': 'USA'}, 'two-letter'),
])
def test_bad_subjects(subject, match):
    with pytest.raises(x.X509Error, match=match):
        x.build_name(subject)


def test_dns_names_are_validated():
    assert x.validate_dns_name('Kvm01.Example.ORG.') == 'kvm01.example.org'
    assert x.validate_dns_name('*.example.org') == '*.example.org'
    for bad in ('', 'a..b', '-a.b', 'a_b.c', 'x' * 64 + '.org', 'a b'):
        with pytest.raises(x.X509Error, match='not a valid DNS name'):
            x.validate_dns_name(bad)


def test_normalize_sans_dedups_and_keeps_order():
    dns, ips = x.normalize_sans(['b.example', 'A.example', 'b.example', None], ['10.0.0.2', ' 10.0.0.1', '::1', '10.0.0.2'])
    assert dns == ['b.example', 'a.example']
    assert ips == ['10.0.0.2', '10.0.0.1', '::1']
    with pytest.raises(x.X509Error, match='not a valid IP'):
        x.normalize_sans([], ['10.0.0.256'])


def test_name_in_sans():
    dns, ips = ['kvm01.example.org', '*.lab.example.org'], ['10.0.0.1', '2001:db8::1']
    assert x.name_in_sans('KVM01.example.org.', dns, ips)
    assert x.name_in_sans('x.lab.example.org', dns, ips)
    assert not x.name_in_sans('y.x.lab.example.org', dns, ips)
    assert x.name_in_sans('2001:db8:0::1', dns, ips)
    assert not x.name_in_sans('10.0.0.2', dns, ips)
    assert not x.name_in_sans('kvm02.example.org', dns, ips)


# --- CA -----------------------------------------------------------------------

def test_ca_is_a_proper_v3_ca(ca):
    key, cert = ca
    assert cert.version == cx509.Version.v3
    bc = cert.extensions.get_extension_for_class(cx509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(cx509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    ski = cert.extensions.get_extension_for_class(cx509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(cx509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.signature_hash_algorithm.name == 'sha384'
    assert cert.subject == cert.issuer == x.build_name(CA_SUBJECT)
    assert x.not_before(cert) == NOW - x.BACKDATE
    assert x.not_after(cert) == NOW + 3650 * DAY
    assert x.signed_by(cert, cert)
    assert x.check_ca(cert, key) == []


def test_rsa_ca_signs_with_sha256():
    key, cert = x.create_ca('rsa-3072', CA_SUBJECT, 10, now=NOW)
    assert cert.signature_hash_algorithm.name == 'sha256'
    leaf = xi.issue_certificate(key, cert, x.generate_private_key('ecdsa-p256').public_key(), HOST_SUBJECT,
                                DNS, [], 'server', 5, now=NOW)
    assert x.signed_by(leaf, cert)


def test_check_ca_finds_problems(ca, other_ca, host_key):
    leaf = issue(ca, host_key)
    problems = x.check_ca(leaf, other_ca[0])
    assert 'basicConstraints CA is FALSE' in problems
    assert 'keyUsage lacks keyCertSign' in problems
    assert 'the CA private key does not belong to the CA certificate' in problems
    bare = (cx509.CertificateBuilder().subject_name(x.build_name({'CN': 'v1'})).issuer_name(x.build_name({'CN': 'v1'}))
            .public_key(host_key.public_key()).serial_number(1).not_valid_before(NOW).not_valid_after(NOW + DAY)
            .sign(host_key, x.hashes.SHA256()))
    assert x.check_ca(bare) == ['no basicConstraints extension (not an X.509 v3 CA)']
    # a CA without SKI still gets an AKI for its leaves
    assert xi.subject_key_identifier(bare).digest == cx509.SubjectKeyIdentifier.from_public_key(host_key.public_key()).digest


# --- issuing ------------------------------------------------------------------

def ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


def test_server_certificate_content(ca, host_key):
    cert = issue(ca, host_key)
    assert cert.subject == x.build_name(HOST_SUBJECT)
    assert cert.issuer == ca[1].subject
    assert ext(cert, cx509.BasicConstraints).critical and not ext(cert, cx509.BasicConstraints).value.ca
    ku = ext(cert, cx509.KeyUsage)
    # libvirt refuses a critical keyUsage without keyEncipherment, even for EC keys
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert list(ext(cert, cx509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    san = ext(cert, cx509.SubjectAlternativeName).value
    assert san.get_values_for_type(cx509.DNSName) == DNS
    assert [str(a) for a in san.get_values_for_type(cx509.IPAddress)] == IPS
    assert ext(cert, cx509.AuthorityKeyIdentifier).value.key_identifier == xi.subject_key_identifier(ca[1]).digest
    assert ext(cert, cx509.SubjectKeyIdentifier).value.digest == \
        cx509.SubjectKeyIdentifier.from_public_key(host_key.public_key()).digest
    assert x.not_after(cert) - x.not_before(cert) == 365 * DAY + x.BACKDATE
    assert cert.signature_hash_algorithm.name == 'sha384'
    assert x.signed_by(cert, ca[1])


def test_client_certificate_with_rsa_key(ca, rsa_key):
    cert = issue(ca, rsa_key, subject={'O': 'secvirt', 'OU': 'virtualization', 'CN': 'root'}, dns=[], ip=[],
                 profile='client')
    assert list(ext(cert, cx509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext(cert, cx509.KeyUsage).value.key_encipherment
    with pytest.raises(cx509.ExtensionNotFound):
        ext(cert, cx509.SubjectAlternativeName)
    assert x.describe(cert)['subject'] == 'CN=root,OU=virtualization,O=secvirt'


def test_validity_is_capped_at_the_ca_expiry(host_key):
    short_ca = x.create_ca('ecdsa-p256', CA_SUBJECT, 30, now=NOW)
    cert = issue(short_ca, host_key, days=365)
    assert x.not_after(cert) == x.not_after(short_ca[1])


def test_unknown_profile(ca, host_key):
    with pytest.raises(x.X509Error, match='unknown profile'):
        issue(ca, host_key, profile='codesign')


# --- verification ---------------------------------------------------------------

def test_verify_good_certificate(ca, host_key):
    cert = issue(ca, host_key)
    assert x.verify_certificate(cert, ca[1], now=NOW, private_key=host_key, names=['kvm01.example.org', '10.0.0.1'],
                                profile='server') == []


def test_verify_finds_every_problem(ca, other_ca, host_key, rsa_key):
    client = issue(other_ca, host_key, profile='client', dns=['other.example.org'], ip=[])
    problems = x.verify_certificate(client, ca[1], now=NOW + 400 * DAY, private_key=rsa_key,
                                    names=['kvm01.example.org'], profile='server')
    joined = '\n'.join(problems)
    assert 'not signed by the CA CN=secvirt,O=secvirt' in joined
    assert 'expired on 2027-11-23T12:00:00Z' in joined
    assert 'the private key does not belong to the certificate' in joined
    assert 'kvm01.example.org is not in the subjectAltName (other.example.org)' in joined
    assert 'extendedKeyUsage lacks serverAuth' in joined
    early = x.verify_certificate(issue(ca, host_key), ca[1], now=NOW - DAY)
    assert early == ['not valid before 2026-11-23T11:00:00Z']
    soon = x.verify_certificate(issue(ca, host_key, days=10), ca[1], now=NOW, min_days_left=30)
    assert soon == ['expires on 2026-12-03T12:00:00Z, within 30 days']
    no_san = issue(ca, host_key, dns=[], ip=[], profile='client')
    assert x.verify_certificate(no_san, ca[1], now=NOW, names=['a.b']) == ['a.b is not in the subjectAltName (none)']


def test_verify_reports_an_expired_ca(host_key):
    short_ca = x.create_ca('ecdsa-p256', CA_SUBJECT, 2, now=NOW)
    cert = issue(short_ca, host_key, days=1)
    problems = x.verify_certificate(cert, short_ca[1], now=NOW + 3 * DAY)
    assert any(p.startswith('the CA expired on') for p in problems)


def test_signed_by_rejects_same_name_other_key(ca, other_ca, host_key):
    cert = issue(ca, host_key)
    assert ca[1].subject == other_ca[1].subject
    assert not x.signed_by(cert, other_ca[1])


def test_signed_by_rejects_unsupported_ca_keys(ca, host_key):
    ed = ed25519.Ed25519PrivateKey.generate()
    name = x.build_name({'CN': 'ed'})
    ed_ca = (cx509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ed.public_key())
             .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + DAY).sign(ed, None))
    leaf = (cx509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(host_key.public_key())
            .serial_number(2).not_valid_before(NOW).not_valid_after(NOW + DAY).sign(ed, None))
    assert not x.signed_by(leaf, ed_ca)


def test_describe_is_log_safe(ca, host_key):
    info = x.describe(issue(ca, host_key))
    assert info['dns'] == ['kvm01', 'kvm01.example.org'] and info['ip'] == ['10.0.0.1']
    assert info['issuer'] == 'CN=secvirt,O=secvirt'
    assert info['extended_key_usage'] == ['clientAuth', 'serverAuth']
    assert info['key_type'] == 'ecdsa-p256'
    assert info['not_after'] == '2027-11-23T12:00:00Z'
    assert 'PRIVATE' not in repr(info)


def test_not_after_falls_back_to_naive_datetimes():
    class Old(object):  # cryptography < 42 has only the naive attributes
        not_valid_after = datetime.datetime(2030, 1, 1)
        not_valid_before = datetime.datetime(2029, 1, 1)
    assert x.not_after(Old()) == datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    assert x.not_before(Old()) == datetime.datetime(2029, 1, 1, tzinfo=datetime.timezone.utc)


# --- renewal decisions --------------------------------------------------------------

def reasons(ca, current, key, subject=None, dns=None, ip=None, profile='server', window=30, now=NOW, days=365):
    return xi.renewal_reasons(current, ca[1], key.public_key(), subject or HOST_SUBJECT,
                              DNS if dns is None else dns, IPS if ip is None else ip, profile, window, now, days)


def test_fresh_matching_certificate_needs_nothing(ca, host_key):
    cert = issue(ca, host_key)
    assert reasons(ca, cert, host_key) == []
    assert reasons(ca, x.certificate_pem(cert), host_key) == []
    # SAN order and case do not matter
    assert reasons(ca, cert, host_key, dns=['KVM01', 'kvm01.example.org'], ip=['10.0.0.1', '10.0.0.1']) == []


def test_missing_and_unreadable(ca, host_key):
    assert reasons(ca, None, host_key) == ['missing: no certificate yet']
    assert reasons(ca, '  ', host_key) == ['missing: no certificate yet']
    assert reasons(ca, 'not a cert', host_key)[0].startswith('unreadable:')


def test_ca_changed(ca, other_ca, host_key):
    cert = issue(other_ca, host_key)
    assert [r.split(':')[0] for r in reasons(ca, cert, host_key)] == ['ca']


def test_key_changed(ca, host_key):
    cert = issue(ca, host_key)
    new_key = x.generate_private_key('ecdsa-p256')
    assert [r.split(':')[0] for r in reasons(ca, cert, new_key)] == ['key']


def test_subject_changed(ca, host_key):
    cert = issue(ca, host_key)
    got = reasons(ca, cert, host_key, subject={'C': 'DE', 'O': 'renamed', 'CN': 'kvm01.example.org'})
    assert got == ['subject: CN=kvm01.example.org,O=secvirt,C=DE -> CN=kvm01.example.org,O=renamed,C=DE']


def test_san_changed(ca, host_key):
    cert = issue(ca, host_key)
    got = reasons(ca, cert, host_key, ip=['10.0.0.1', '10.0.0.9'])
    assert got == ['san: kvm01, kvm01.example.org, 10.0.0.1 -> kvm01, kvm01.example.org, 10.0.0.1, 10.0.0.9']


def test_profile_changed(ca, host_key):
    cert = issue(ca, host_key, profile='client')
    assert [r.split(':')[0] for r in reasons(ca, cert, host_key)] == ['profile']


def test_expiring_inside_the_window(ca, host_key):
    cert = issue(ca, host_key, days=365)
    assert reasons(ca, cert, host_key, now=NOW + 334 * DAY) == []
    got = reasons(ca, cert, host_key, now=NOW + 336 * DAY)
    assert got == ['expiring: not after 2027-11-23T12:00:00Z, inside the 30-day renewal window']
    # a wider window on the same certificate
    assert reasons(ca, cert, host_key, window=400, days=730)[0].startswith('expiring:')


def test_no_endless_renewal_when_the_ca_caps_the_lifetime(host_key):
    short_ca = x.create_ca('ecdsa-p256', CA_SUBJECT, 20, now=NOW)
    cert = issue(short_ca, host_key, days=365)  # capped at the CA's 20 days
    # inside the window, but a new certificate could not live longer
    assert reasons(short_ca, cert, host_key, now=NOW + DAY) == []
    # once expired it is re-issued anyway (and verification reports the CA)
    assert reasons(short_ca, cert, host_key, now=NOW + 25 * DAY, days=365)[0].startswith('expiring:')


def test_several_reasons_at_once(ca, other_ca, host_key):
    cert = issue(other_ca, host_key, dns=['old.example.org'], ip=[])
    codes = [r.split(':')[0] for r in reasons(ca, cert, x.generate_private_key('ecdsa-p256'), now=NOW + 360 * DAY)]
    assert codes == ['ca', 'key', 'san', 'expiring']


# --- batch signing ------------------------------------------------------------------

def test_batch_issues_and_then_keeps(ca, host_key):
    second = x.generate_private_key('ecdsa-p384')
    reqs = [request(host_key),
            request(second, name='kvm02/client', profile='client', subject={'O': 'secvirt', 'CN': 'kvm02'},
                    dns=[], ip=[], validity_days=30)]
    first = xi.sign_requests(ca[0], ca[1], reqs, renew_before_days=7, now=NOW)
    assert set(first) == {'kvm01/server', 'kvm02/client'}
    assert all(r['renewed'] and r['reasons'] == ['missing: no certificate yet'] for r in first.values())
    assert first['kvm02/client']['not_after'] == '2026-12-23T12:00:00Z'
    assert first['kvm02/client']['extended_key_usage'] == ['clientAuth']
    for req in reqs:
        req['current'] = first[req['name']]['certificate']
    again = xi.sign_requests(ca[0], ca[1], reqs, renew_before_days=7, now=NOW + DAY)
    assert not any(r['renewed'] for r in again.values())
    assert again['kvm01/server']['certificate'] == first['kvm01/server']['certificate']
    assert 'previous' not in again['kvm01/server']
    forced = xi.sign_requests(ca[0], ca[1], reqs, renew_before_days=7, now=NOW + DAY, force=True)
    assert forced['kvm01/server']['reasons'] == ['forced: re-issue requested']
    assert forced['kvm01/server']['previous']['serial'] == first['kvm01/server']['serial']
    assert forced['kvm01/server']['serial'] != first['kvm01/server']['serial']


def test_batch_renews_only_what_is_due(ca, host_key):
    client_key = x.generate_private_key('ecdsa-p256')
    reqs = [request(host_key, validity_days=30),
            request(client_key, name='kvm01/client', profile='client', subject={'O': 'secvirt', 'CN': 'c'},
                    dns=[], ip=[], validity_days=365)]
    first = xi.sign_requests(ca[0], ca[1], reqs, renew_before_days=7, now=NOW)
    for req in reqs:
        req['current'] = first[req['name']]['certificate']
    reqs[0]['validity_days'] = 60
    later = xi.sign_requests(ca[0], ca[1], reqs, renew_before_days=45, now=NOW)
    assert later['kvm01/server']['renewed'] and later['kvm01/server']['reasons'][0].startswith('expiring:')
    assert not later['kvm01/client']['renewed']


def test_batch_validates_everything_before_signing(ca, host_key):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tampered = bytearray(x.build_csr(host_key, {'CN': 'x.example'}).public_bytes(serialization.Encoding.DER))
    tampered[-3] ^= 0xFF
    tampered_pem = (b'-----BEGIN CERTIFICATE REQUEST-----\n' + base64.encodebytes(bytes(tampered))
                    + b'-----END CERTIFICATE REQUEST-----\n').decode()
    reqs = [
        request(host_key, name='ok'),
        request(weak, name='weak'),
        request(host_key, name='ok'),
        request(host_key, name='nosan', dns=[], ip=[]),
        request(host_key, name='cn', subject={'CN': 'elsewhere.example.org'}),
        request(host_key, name='garbage', csr='nope'),
        request(host_key, name='days', validity_days=20),
        request(host_key, name='badip', ip=['300.1.1.1']),
        dict(request(host_key), name=''),
        request(host_key, name='tampered', csr=tampered_pem),
    ]
    with pytest.raises(x.X509Error) as exc:
        xi.sign_requests(ca[0], ca[1], reqs, renew_before_days=30, now=NOW)
    msg = str(exc.value)
    assert msg.startswith('refusing to sign anything; bad requests: ')
    for part in ('weak: RSA key of 2048 bits is too weak', 'ok: duplicate request name',
                 'nosan: a server certificate needs at least one DNS name or IP address',
                 'cn: the CN elsewhere.example.org must also be in the subjectAltName',
                 'garbage: not a PEM certificate signing request',
                 'days: the renewal window (30 days) must be shorter than the validity (20 days)',
                 "badip: '300.1.1.1' is not a valid IP address", '<unnamed>: every request needs a name'):
        assert part in msg
    assert 'tampered: ' in msg  # unreadable or a signature that does not verify
    assert 'ok: ' not in msg.replace('ok: duplicate', '')


def test_csr_proof_of_possession(host_key):
    csr = x.build_csr(host_key, {'CN': 'kvm01.example.org'}, DNS, IPS)
    x.check_csr(csr)
    assert x.sans_of(csr) == (sorted(DNS), IPS)
    assert x.load_csr(x.csr_pem(csr)).public_key().public_numbers() == host_key.public_key().public_numbers()


# --- files -----------------------------------------------------------------------

def test_atomic_write_and_read(tmp_path):
    path = str(tmp_path / 'key.pem')
    assert xf.read_file(path) is None
    xf.atomic_write(path, 'secret', 0o400)
    assert xf.read_file(path) == b'secret'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o400
    xf.atomic_write(path, b'new', 0o644)
    assert xf.read_file(path) == b'new'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # never wider than 0600 before the module sets the mode
    assert [p for p in os.listdir(str(tmp_path)) if p.startswith('.secvirt-')] == []
    with pytest.raises(x.X509Error, match='does not exist'):
        xf.atomic_write(str(tmp_path / 'missing' / 'f'), 'x')
    with pytest.raises(OSError):
        xf.read_file(str(tmp_path))


def test_atomic_write_cleans_up_on_error(tmp_path, monkeypatch):
    def boom(*_args, **_kwargs):  # atomic_write renames relative to the directory's descriptor
        raise OSError('rename failed')
    monkeypatch.setattr(xf.os, 'rename', boom)
    with pytest.raises(OSError):
        xf.atomic_write(str(tmp_path / 'f'), 'x')
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('mode,secret,ok', [
    ('0600', True, True), ('0440', True, True), ('0640', True, True), ('0644', True, False),
    ('0644', False, True), ('0755', False, False), ('4600', True, False), ('rw', True, False), (None, True, False),
])
def test_parse_mode(mode, secret, ok):
    if ok:
        assert xf.parse_mode(mode, 'f', secret) == int(mode, 8)
    else:
        with pytest.raises(x.X509Error):
            xf.parse_mode(mode, 'f', secret)


def test_plan_key(tmp_path, host_key):
    path = str(tmp_path / 'k.pem')
    assert xf.plan_key(path, 'ecdsa-p256')[:2] == (None, 'missing')
    with open(path, 'w') as handle:
        handle.write('junk')
    assert xf.plan_key(path, 'ecdsa-p256')[1] == 'unreadable'
    with open(path, 'wb') as handle:
        handle.write(x.private_key_pem(host_key))
    key, reason, data = xf.plan_key(path, 'ecdsa-p256')
    assert reason == '' and x.keys_match(key, host_key) and data == x.private_key_pem(host_key)
    assert xf.plan_key(path, 'ecdsa-p384')[1] == 'type'
    assert xf.plan_key(path, 'ecdsa-p256', regenerate=True)[1] == 'regenerate'


def test_file_summary_never_shows_secrets(tmp_path, ca, host_key):
    path = str(tmp_path / 'k.pem')
    pem = x.private_key_pem(host_key)
    with open(path, 'wb') as handle:
        handle.write(pem)
    line = xf.file_summary(path, pem)
    assert line.startswith(path + ': ecdsa-p256 key ') and 'PRIVATE' not in line and ' mode ' in line
    assert xf.file_summary(path, None) == path + ': absent\n'
    assert 'unreadable key' in xf.file_summary(path, b'junk')
    cert = x.certificate_pem(issue(ca, host_key))
    assert 'certificate CN=kvm01.example.org,O=secvirt,C=DE serial' in xf.file_summary(str(tmp_path / 'nofile'), cert, 'certificate')


def test_certificate_without_key_encipherment_is_reissued(ca, host_key, monkeypatch):
    # what earlier releases issued for EC keys, and libvirtd refuses at start-up
    old_usage = cx509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                               data_encipherment=False, key_agreement=False, key_cert_sign=False,
                               crl_sign=False, encipher_only=False, decipher_only=False)
    monkeypatch.setattr(xi, 'key_usage_for', lambda _public_key: old_usage)
    cert = issue(ca, host_key)
    monkeypatch.undo()
    assert reasons(ca, cert, host_key) == [
        'profile: keyUsage lacks digitalSignature or keyEncipherment (libvirt requires both)']
    assert reasons(ca, issue(ca, host_key), host_key) == []


# --- symlinks a user could plant (security review: root writing through user links) ---

def snapshot(path):
    """Bytes (or directory listing), mode and owner of what a link points at."""
    st = os.lstat(path)
    content = sorted(os.listdir(path)) if stat.S_ISDIR(st.st_mode) else open(path, 'rb').read()
    return content, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def plant_user_links(tmp_path):
    """A root-only key and directory, and the two links a user could plant towards them.

    (a) ~alice/.pki/libvirt/clientkey.pem -> the root-only key (a final component);
    (b) ~bob/.pki -> the root directory (an intermediate directory), owned by uid 65534.
    """
    private = tmp_path / 'etc/pki/libvirt/private'
    private.mkdir(parents=True)
    secret = private / 'serverkey.pem'
    secret.write_bytes(b'root-only key')
    os.chmod(str(secret), 0o600)
    rootdir = tmp_path / 'etc/something'
    (rootdir / 'libvirt').mkdir(parents=True)
    alice = tmp_path / 'home/alice/.pki/libvirt'
    alice.mkdir(parents=True)
    final_link = alice / 'clientkey.pem'
    os.symlink(str(secret), str(final_link))
    os.lchown(str(final_link), 65534, 65534)
    (tmp_path / 'home/bob').mkdir(parents=True)
    dir_link = tmp_path / 'home/bob/.pki'
    os.symlink(str(rootdir), str(dir_link))
    os.lchown(str(dir_link), 65534, 65534)
    return secret, rootdir, str(final_link), str(dir_link / 'libvirt/clientkey.pem')


@pytest.mark.skipif(os.geteuid() != 0, reason='planting a link owned by another user needs root')
def test_file_helpers_refuse_links_a_user_could_plant(tmp_path):
    secret, rootdir, via_final, via_dir = plant_user_links(tmp_path)
    before = snapshot(str(secret)), snapshot(str(rootdir / 'libvirt'))
    for path in (via_final, via_dir):
        with pytest.raises(x.X509Error, match='refusing .*is a symlink'):
            xf.read_file(path)
        with pytest.raises(x.X509Error, match='refusing .*is a symlink'):
            xf.atomic_write(path, b'attacker-chosen', 0o600)
        with pytest.raises(x.X509Error, match='refusing .*is a symlink'):
            xf.check_path(path)
        with pytest.raises(x.X509Error, match='refusing .*is a symlink'):
            xf.set_attributes(path, 65534, 65534, 0o644)
        with pytest.raises(x.X509Error, match='refusing .*is a symlink'):
            xf.plan_key(path, 'ecdsa-p256')
    with pytest.raises(x.X509Error) as exc:
        xf.read_file(via_dir)
    assert str(exc.value) == ('refusing %s: %s is a symlink owned by uid 65534 (not root); '
                              'a user could point it at a root-only file' % (via_dir, tmp_path / 'home/bob/.pki'))
    with pytest.raises(x.X509Error) as exc:
        xf.check_path(via_final)
    assert str(exc.value).startswith('refusing %s: %s is a symlink' % (via_final, via_final))
    # even a root-owned final link is refused: a key or certificate must be a regular file
    os.lchown(via_final, 0, 0)
    with pytest.raises(x.X509Error, match='must be a regular file'):
        xf.check_path(via_final)
    assert xf.file_summary(via_final, b'junk').endswith('unreadable key\n')  # no stat through the link
    assert (snapshot(str(secret)), snapshot(str(rootdir / 'libvirt'))) == before
    assert sorted(os.listdir(str(tmp_path / 'home/alice/.pki/libvirt'))) == ['clientkey.pem']

    # positive controls: a root-owned directory link (/var/run -> /run style) and a plain path
    (tmp_path / 'run').mkdir()
    (tmp_path / 'var').mkdir()
    os.symlink('../run', str(tmp_path / 'var/run'))
    for path in (str(tmp_path / 'var/run/k.pem'), str(tmp_path / 'home/alice/.pki/libvirt/other.pem')):
        xf.check_path(path)
        xf.atomic_write(path, b'fine', 0o600)
        assert xf.read_file(path) == b'fine'
        assert xf.set_attributes(path, 65534, 65534, 0o640)
        assert not xf.set_attributes(path, 65534, 65534, 0o640)
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o640)
    assert (tmp_path / 'run/k.pem').read_bytes() == b'fine'
    # a missing directory is an error, or tolerated on request (check mode), but links are still checked
    with pytest.raises(x.X509Error, match='does not exist'):
        xf.check_path(str(tmp_path / 'none/k.pem'))
    xf.check_path(str(tmp_path / 'none/k.pem'), missing_ok=True)
    with pytest.raises(x.X509Error, match='owned by uid 65534'):
        xf.check_path(str(tmp_path / 'home/bob/.pki/none/k.pem'), missing_ok=True)


def test_read_file_refuses_what_is_not_a_regular_file(tmp_path):
    fifo = str(tmp_path / 'fifo.pem')
    os.mkfifo(fifo)
    with pytest.raises(x.X509Error, match='not a regular file'):
        xf.read_file(fifo)  # and does not hang waiting for a writer
    with pytest.raises(x.X509Error, match='not a regular file'):
        xf.check_path(fifo)


# --- one name, two hosts (security review: names must not be claimable twice) ---

def test_batch_refuses_a_name_claimed_by_two_hosts(ca, host_key):
    other_key = x.generate_private_key('ecdsa-p256')

    def req(name, key, cn, dns, ip=(), **kw):
        return request(key, name=name, subject={'O': 'secvirt', 'CN': cn}, dns=list(dns), ip=list(ip), **kw)

    # kvm1 claims kvm.example.org as CN and SAN, kvm2 as a SAN only (other case, trailing dot)
    clash = [req('kvm1/libvirtd-server', host_key, 'kvm.example.org', ['kvm.example.org', 'kvm1.example.org']),
             req('kvm2/libvirtd-server', other_key, 'kvm2.example.org', ['kvm2.example.org', 'KVM.Example.org.'])]
    with pytest.raises(x.X509Error) as exc:
        xi.sign_requests(ca[0], ca[1], clash, now=NOW)
    msg = str(exc.value)
    assert msg.startswith('refusing to sign anything; ')
    assert 'kvm.example.org is claimed by two hosts: kvm1 (kvm1/libvirtd-server) and kvm2 (kvm2/libvirtd-server)' in msg

    # a wildcard claims what it covers, and IP addresses compare by value
    wildcard = [clash[0], req('kvm2/libvirtd-server', other_key, 'kvm2.example.org', ['kvm2.example.org', '*.Example.org'])]
    with pytest.raises(x.X509Error, match=r'kvm.example.org \(covered by \*.example.org\) is claimed by two hosts: kvm2'):
        xi.sign_requests(ca[0], ca[1], wildcard, now=NOW)
    same_ip = [req('kvm1/libvirtd-server', host_key, 'kvm1.example.org', ['kvm1.example.org'], ['2001:db8::1']),
               req('kvm2/libvirtd-server', other_key, 'kvm2.example.org', ['kvm2.example.org'], ['2001:DB8:0:0::1'])]
    with pytest.raises(x.X509Error, match='2001:db8::1 is claimed by two hosts: kvm1'):
        xi.sign_requests(ca[0], ca[1], same_ip, now=NOW)
    # the host key overrides the name's prefix
    with pytest.raises(x.X509Error, match='claimed by two hosts: a '):
        xi.sign_requests(ca[0], ca[1], [dict(same_ip[0], host='a'), dict(same_ip[1], name='a/qemu-server', host='b')],
                         now=NOW)
    # a SAN carried by a client certificate counts too
    client_san = [clash[0], req('kvm2/client', other_key, 'admin', ['kvm.example.org'], profile='client')]
    with pytest.raises(x.X509Error, match='kvm.example.org is claimed by two hosts'):
        xi.sign_requests(ca[0], ca[1], client_san, now=NOW)

    # positive control: several identities of ONE host share their names; client CNs are identities
    fine = [req('kvm1/libvirtd-server', host_key, 'kvm.example.org', ['kvm.example.org', 'kvm1.example.org']),
            req('kvm1/qemu-server', other_key, 'kvm.example.org', ['KVM.example.org.', 'kvm1.example.org']),
            req('kvm1/client', host_key, 'admin', [], profile='client'),
            req('kvm2/client', other_key, 'admin', [], profile='client'),
            req('kvm2/libvirtd-server', other_key, 'kvm2.example.org', ['kvm2.example.org']),
            dict(req('x/y', other_key, 'kvm1.example.org', ['kvm1.example.org']), host='kvm1')]
    signed = xi.sign_requests(ca[0], ca[1], fine, now=NOW)
    assert sorted(signed) == sorted(r['name'] for r in fine)
    assert all(r['renewed'] for r in signed.values())
