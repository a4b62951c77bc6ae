# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""X.509 logic for the private libvirt/VNC/SPICE/migration CA.

Plain Python on top of ``cryptography`` (no Ansible import) so that the unit
tests call it directly.  It runs on the controller (CA, signing) and on the
managed hosts (keys, CSRs, verification), so it must work with the oldest
``cryptography`` we meet on a target: 38.0 (Debian 12).  Anything newer is
used through a fallback (see :func:`not_after`).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import datetime
import errno
import grp
import hashlib
import ipaddress
import os
import pwd
import re
import stat

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised only without the library
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = _exc

KEY_TYPES = ('ecdsa-p256', 'ecdsa-p384', 'rsa-3072', 'rsa-4096')
PROFILES = ('server', 'client')
# Short attribute names accepted in subject dicts, as openssl and libvirt's
# tls_allowed_dn_list spell them.
NAME_ATTRIBUTES = ('C', 'ST', 'L', 'O', 'OU', 'CN', 'DC', 'emailAddress', 'serialNumber')
UTC = datetime.timezone.utc
# A fresh certificate is back-dated so that a host whose clock lags a little
# behind the controller does not reject it as "not yet valid".
BACKDATE = datetime.timedelta(hours=1)
_DNS_LABEL = re.compile(r'^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$')


class X509Error(Exception):
    """Bad input, a weak key or a broken chain: the message says which."""


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------

def _oids():
    return {
        'C': NameOID.COUNTRY_NAME, 'ST': NameOID.STATE_OR_PROVINCE_NAME,
        'L': NameOID.LOCALITY_NAME, 'O': NameOID.ORGANIZATION_NAME,
        'OU': NameOID.ORGANIZATIONAL_UNIT_NAME, 'CN': NameOID.COMMON_NAME,
        'DC': NameOID.DOMAIN_COMPONENT, 'emailAddress': NameOID.EMAIL_ADDRESS,
        'serialNumber': NameOID.SERIAL_NUMBER,
    }


def generate_private_key(key_type):
    """Create a key of one of :data:`KEY_TYPES`."""
    if key_type == 'ecdsa-p256':
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == 'ecdsa-p384':
        return ec.generate_private_key(ec.SECP384R1())
    if key_type in ('rsa-3072', 'rsa-4096'):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise X509Error('unknown key type %r (choose one of %s)' % (key_type, ', '.join(KEY_TYPES)))


def key_type_of(key):
    """``ecdsa-p256`` / ``rsa-3072`` ... for a private or public key (None if other)."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {'secp256r1': 'ecdsa-p256', 'secp384r1': 'ecdsa-p384',
                'secp521r1': 'ecdsa-p521'}.get(key.curve.name, 'ecdsa-' + key.curve.name)
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return 'rsa-%d' % key.key_size
    return None


def check_key_strength(public_key, min_rsa_bits=3072):
    """Raise X509Error for keys libvirt/GnuTLS should not be trusted with."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < min_rsa_bits:
            raise X509Error('RSA key of %d bits is too weak (minimum %d)' % (public_key.key_size, min_rsa_bits))
        return
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ('secp256r1', 'secp384r1', 'secp521r1'):
            raise X509Error('elliptic curve %s is not accepted (use P-256, P-384 or P-521)' % public_key.curve.name)
        return
    raise X509Error('key algorithm %s is not accepted (use ECDSA or RSA)' % type(public_key).__name__)


def private_key_pem(key, passphrase=None):
    """PKCS#8 PEM; encrypted with the best available cipher when a passphrase is given."""
    if passphrase:
        enc = serialization.BestAvailableEncryption(_to_bytes(passphrase))
    else:
        enc = serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def load_private_key(data, passphrase=None):
    """Load a PEM key; a wrong or missing passphrase is an X509Error, not a traceback."""
    pw = _to_bytes(passphrase) if passphrase else None
    try:
        return serialization.load_pem_private_key(_to_bytes(data), password=pw)
    except TypeError as exc:
        # key encrypted but no passphrase, or passphrase for a plain key
        raise X509Error('private key: %s' % exc)
    except ValueError as exc:
        raise X509Error('private key cannot be read (wrong passphrase or not a PEM key): %s' % exc)


def is_encrypted_pem(data):
    text = _to_text(data)
    return 'ENCRYPTED PRIVATE KEY' in text or 'Proc-Type: 4,ENCRYPTED' in text


def public_key_der(key):
    if hasattr(key, 'public_key') and not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(data):
    """SHA-256 over DER bytes as ``aa:bb:...``."""
    digest = hashlib.sha256(data).hexdigest()
    return ':'.join(digest[i:i + 2] for i in range(0, len(digest), 2))


def public_key_fingerprint(key):
    """SHA-256 of the SubjectPublicKeyInfo: the same for a key, its CSR and its certificates."""
    return fingerprint(public_key_der(key))


def keys_match(a, b):
    return public_key_der(a) == public_key_der(b)


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

def build_name(subject):
    """``{'C': 'US', 'O': 'Example', 'CN': 'host'}`` -> x509.Name in that (certificate) order.

    The order of the dict is the order in the certificate, most significant
    first, as openssl's ``-subj /C=US/O=Example/CN=host`` writes it.
    """
    if not subject:
        raise X509Error('subject must not be empty')
    if not isinstance(subject, dict):
        raise X509Error('subject must be a mapping of attribute to value, got %s' % type(subject).__name__)
    oids = _oids()
    attrs = []
    for key, value in subject.items():
        if key not in oids:
            raise X509Error('unknown subject attribute %r (use %s)' % (key, ', '.join(NAME_ATTRIBUTES)))
        values = value if isinstance(value, list) else [value]
        for item in values:
            item = _to_text(item)
            if not item:
                raise X509Error('subject attribute %s is empty' % key)
            if key == 'C' and len(item) != 2:
                raise X509Error('subject C must be a two-letter country code, got %r' % item)
            attrs.append(x509.NameAttribute(oids[key], item))
    return x509.Name(attrs)


def name_to_string(name):
    """RFC 4514 string (last RDN first), the form GnuTLS >= 3.5.7 and libvirt print."""
    return name.rfc4514_string()


def common_name(name):
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return values[0].value if values else None


# --------------------------------------------------------------------------
# Subject alternative names
# --------------------------------------------------------------------------

def validate_dns_name(name):
    """Raise X509Error unless name is a syntactically valid DNS name (a leading ``*.`` is allowed)."""
    text = _to_text(name).rstrip('.')
    labels = text.split('.')
    if labels and labels[0] == '*':
        labels = labels[1:]
    if not text or len(text) > 253 or not labels or not all(_DNS_LABEL.match(label) for label in labels):
        raise X509Error('%r is not a valid DNS name' % name)
    return text.lower()


def normalize_sans(dns=None, ip=None):
    """Return (unique DNS names, unique IP strings), validated, in the order given.

    The order is kept for issuing (the first DNS name is the one humans look
    at); comparisons use sorted copies.
    """
    names = []
    for value in dns or []:
        if value:
            name = validate_dns_name(value)
            if name not in names:
                names.append(name)
    addrs = []
    for value in ip or []:
        try:
            addr = str(ipaddress.ip_address(_to_text(value).strip()))
        except ValueError:
            raise X509Error('%r is not a valid IP address' % value)
        if addr not in addrs:
            addrs.append(addr)
    return names, addrs


def san_extension(dns, ip):
    entries = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ip]
    return x509.SubjectAlternativeName(entries)


def sans_of(obj):
    """(sorted DNS names, sorted IP strings) from a certificate or CSR."""
    try:
        ext = obj.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = sorted(set(n.lower().rstrip('.') for n in ext.get_values_for_type(x509.DNSName)))
    ips = sorted(set(str(a) for a in ext.get_values_for_type(x509.IPAddress)), key=_ip_sort_key)
    return dns, ips


def _ip_sort_key(text):
    addr = ipaddress.ip_address(text)
    return (addr.version, int(addr))


def name_in_sans(name, dns, ips):
    """True when a client connecting to `name` would find it in the SAN (wildcards honoured)."""
    text = _to_text(name).lower().rstrip('.')
    try:
        return str(ipaddress.ip_address(text)) in ips
    except ValueError:
        pass
    for entry in dns:
        if entry == text:
            return True
        if entry.startswith('*.') and '.' in text and text.split('.', 1)[1] == entry[2:]:
            return True
    return False


# --------------------------------------------------------------------------
# Time helpers (cryptography < 42 has only naive UTC datetimes)
# --------------------------------------------------------------------------

def utcnow():
    return datetime.datetime.now(UTC)


def not_after(cert):
    value = getattr(cert, 'not_valid_after_utc', None)
    if value is None:
        value = cert.not_valid_after.replace(tzinfo=UTC)
    return value


def not_before(cert):
    value = getattr(cert, 'not_valid_before_utc', None)
    if value is None:
        value = cert.not_valid_before.replace(tzinfo=UTC)
    return value


def iso(value):
    return value.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def load_certificate(data):
    try:
        return x509.load_pem_x509_certificate(_to_bytes(data))
    except ValueError as exc:
        raise X509Error('not a PEM certificate: %s' % exc)


def load_csr(data):
    try:
        return x509.load_pem_x509_csr(_to_bytes(data))
    except ValueError as exc:
        raise X509Error('not a PEM certificate signing request: %s' % exc)


def certificate_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def csr_pem(csr):
    return csr.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------
# CSR
# --------------------------------------------------------------------------

def build_csr(key, subject, dns=None, ip=None):
    """A PKCS#10 request signed with `key` (proof of possession for the signer)."""
    dns, ip = normalize_sans(dns, ip)
    builder = x509.CertificateSigningRequestBuilder().subject_name(build_name(subject))
    if dns or ip:
        builder = builder.add_extension(san_extension(dns, ip), critical=False)
    return builder.sign(key, _hash_for(key))


def check_csr(csr, min_rsa_bits=3072):
    """The CSR must be signed by its own key (proof of possession) and that key strong enough."""
    if not csr.is_signature_valid:
        raise X509Error('CSR signature does not verify: the requester does not hold the key')
    check_key_strength(csr.public_key(), min_rsa_bits)


# --------------------------------------------------------------------------
# CA
# --------------------------------------------------------------------------

def _hash_for(key):
    """SHA-384 for P-384 (and bigger) keys, SHA-256 otherwise: never below SHA-256."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def create_ca(key_type, subject, validity_days, now=None, key=None):
    """Return (private key, self-signed v3 CA certificate)."""
    now = now or utcnow()
    key = key or generate_private_key(key_type)
    name = build_name(subject)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=validity_days))
        # pathlen 0: this CA signs leaf certificates only, never another CA
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return key, builder.sign(key, _hash_for(key))


def check_ca(cert, key=None):
    """Problems (list of str) that make `cert` unusable as our signing CA."""
    problems = []
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not bc.ca:
            problems.append('basicConstraints CA is FALSE')
    except x509.ExtensionNotFound:
        problems.append('no basicConstraints extension (not an X.509 v3 CA)')
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            problems.append('keyUsage lacks keyCertSign')
    except x509.ExtensionNotFound:
        pass
    if key is not None and not keys_match(key, cert.public_key()):
        problems.append('the CA private key does not belong to the CA certificate')
    return problems


def subject_key_identifier(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


# --------------------------------------------------------------------------
# Issuing
# --------------------------------------------------------------------------

def profile_eku(profile):
    """Extended key usages per profile.

    libvirt hosts act as TLS clients of each other during peer-to-peer
    migration and QEMU's migration/NBD TLS uses the same credentials in both
    directions, so a server certificate also carries clientAuth.
    """
    if profile == 'server':
        return [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    if profile == 'client':
        return [ExtendedKeyUsageOID.CLIENT_AUTH]
    raise X509Error('unknown profile %r (server or client)' % profile)


def key_usage_for(public_key):  # pylint: disable=unused-argument
    """digitalSignature and keyEncipherment, whatever the key type.

    keyEncipherment only means something for RSA key transport, but libvirt's
    certificate check (virNetTLSContextCheckCertKeyUsage) refuses a critical
    keyUsage without it for every key type: libvirtd 9.0 exits with "usage
    does not permit key encipherment" on an ECDSA server certificate that
    lacks it (seen on the demo host).
    """
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=True,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False)


def _key_usage_fits(cert, public_key):
    try:
        have = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    want = key_usage_for(public_key)
    return have.digital_signature == want.digital_signature and have.key_encipherment == want.key_encipherment


def issue_certificate(ca_key, ca_cert, public_key, subject, dns, ip, profile, validity_days, now=None):
    """Sign a leaf certificate; its validity never outlasts the CA's."""
    now = now or utcnow()
    dns, ip = normalize_sans(dns, ip)
    end = min(now + datetime.timedelta(days=validity_days), not_after(ca_cert))
    builder = (
        x509.CertificateBuilder()
        .subject_name(build_name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage_for(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage(profile_eku(profile)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            subject_key_identifier(ca_cert)), critical=False)
    )
    if dns or ip:
        builder = builder.add_extension(san_extension(dns, ip), critical=False)
    return builder.sign(ca_key, _hash_for(ca_key))


# --------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------

def signed_by(cert, ca_cert):
    """True when ca_cert's key made cert's signature and the issuer name matches.

    cryptography 38 has no Certificate.verify_directly_issued_by (40+), so the
    signature is checked by hand for the two key types we issue with.
    """
    if cert.issuer != ca_cert.subject:
        return False
    pub = ca_cert.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def eku_of(cert):
    try:
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


def verify_certificate(cert, ca_cert, now=None, private_key=None, names=(), profile=None, min_days_left=0):
    """Problems (list of str) a TLS peer or a careful operator would find."""
    now = now or utcnow()
    problems = []
    if not signed_by(cert, ca_cert):
        problems.append('not signed by the CA %s' % name_to_string(ca_cert.subject))
    if not_before(cert) > now:
        problems.append('not valid before %s' % iso(not_before(cert)))
    if not_after(cert) <= now:
        problems.append('expired on %s' % iso(not_after(cert)))
    elif min_days_left and not_after(cert) - now < datetime.timedelta(days=min_days_left):
        problems.append('expires on %s, within %d days' % (iso(not_after(cert)), min_days_left))
    if not_after(ca_cert) <= now:
        problems.append('the CA expired on %s' % iso(not_after(ca_cert)))
    if private_key is not None and not keys_match(private_key, cert.public_key()):
        problems.append('the private key does not belong to the certificate')
    dns, ips = sans_of(cert)
    for name in names or ():
        if not name_in_sans(name, dns, ips):
            problems.append('%s is not in the subjectAltName (%s)' % (name, ', '.join(dns + ips) or 'none'))
    if profile:
        missing = set(profile_eku(profile)) - eku_of(cert)
        if missing:
            problems.append('extendedKeyUsage lacks %s' % ', '.join(sorted(o._name for o in missing)))
    return problems


def describe(cert):
    """Public, log-safe facts about a certificate."""
    dns, ips = sans_of(cert)
    return dict(
        subject=name_to_string(cert.subject),
        issuer=name_to_string(cert.issuer),
        serial='%x' % cert.serial_number,
        not_before=iso(not_before(cert)),
        not_after=iso(not_after(cert)),
        dns=dns, ip=ips,
        fingerprint=fingerprint(cert.public_bytes(serialization.Encoding.DER)),
        public_key_fingerprint=public_key_fingerprint(cert.public_key()),
        key_type=key_type_of(cert.public_key()),
        extended_key_usage=sorted(o._name for o in eku_of(cert)),
    )


# --------------------------------------------------------------------------
# Renewal decisions and batch signing
# --------------------------------------------------------------------------

def renewal_reasons(current, ca_cert, public_key, subject, dns, ip, profile, renew_before_days, now=None,
                    validity_days=None):
    """Why `current` (a certificate, PEM or None) must be re-issued; [] when it is fine.

    Each reason is ``"<code>: <detail>"`` with code one of missing, unreadable,
    ca, key, subject, san, profile, expiring.
    """
    now = now or utcnow()
    if current is None or (not isinstance(current, x509.Certificate) and not _to_text(current).strip()):
        return ['missing: no certificate yet']
    if not isinstance(current, x509.Certificate):
        try:
            current = load_certificate(current)
        except X509Error as exc:
            return ['unreadable: %s' % exc]
    reasons = []
    if not signed_by(current, ca_cert):
        reasons.append('ca: issued by %s, not by the current CA' % name_to_string(current.issuer))
    if not keys_match(current.public_key(), public_key):
        reasons.append('key: the host key changed (certificate key %s, requested %s)' % (
            public_key_fingerprint(current.public_key())[:23], public_key_fingerprint(public_key)[:23]))
    wanted = build_name(subject)
    if current.subject != wanted:
        reasons.append('subject: %s -> %s' % (name_to_string(current.subject), name_to_string(wanted)))
    want_dns, want_ip = normalize_sans(dns, ip)
    want_dns, want_ip = sorted(want_dns), sorted(want_ip, key=_ip_sort_key)
    have_dns, have_ip = sans_of(current)
    if (have_dns, have_ip) != (want_dns, want_ip):
        reasons.append('san: %s -> %s' % (', '.join(have_dns + have_ip) or 'none', ', '.join(want_dns + want_ip) or 'none'))
    if eku_of(current) != set(profile_eku(profile)):
        reasons.append('profile: extendedKeyUsage %s does not fit profile %s' % (
            ','.join(sorted(o._name for o in eku_of(current))) or 'none', profile))
    if not _key_usage_fits(current, public_key):
        reasons.append('profile: keyUsage lacks digitalSignature or keyEncipherment (libvirt requires both)')
    window = datetime.timedelta(days=renew_before_days)
    if not_after(current) - now < window:
        # Re-issuing only helps when the new certificate would live longer; a
        # CA that itself expires inside the window caps every new certificate
        # and would otherwise cause a re-issue on every run.
        horizon = now + datetime.timedelta(days=validity_days) if validity_days else not_after(ca_cert)
        if min(horizon, not_after(ca_cert)) > not_after(current) or not_after(current) <= now:
            reasons.append('expiring: not after %s, inside the %d-day renewal window' % (
                iso(not_after(current)), renew_before_days))
    return reasons


def request_host(req):
    """The host a request belongs to: its ``host``, else ``name`` up to the first '/', else ``name``."""
    host = req.get('host')
    if host:
        return '%s' % host
    return ('%s' % req.get('name')).split('/', 1)[0]


def _claim_key(value):
    """('ip', address) or ('dns', lower-case name without trailing dot) for comparisons."""
    text = _to_text(value).strip()
    try:
        return 'ip', ipaddress.ip_address(text)
    except ValueError:
        return 'dns', text.lower().rstrip('.')


def claimed_names(profile, subject, dns, ip):
    """Every name a certificate lets its holder answer for: SANs, and a server certificate's CN.

    A client certificate's CN names a person or service identity, not a host,
    so it is no claim; any SAN it carries is.
    """
    claims = set(_claim_key(n) for n in dns or []) | set(_claim_key(a) for a in ip or [])
    if profile == 'server':
        cns = (subject or {}).get('CN')
        for cn in cns if isinstance(cns, list) else [cns]:
            if cn:
                claims.add(_claim_key(cn))
    return claims


def name_conflicts(claims):
    """One message per name that two different hosts claim.

    `claims` is a list of (host, request name, set of claim keys as made by
    :func:`claimed_names`). Several identities of one host may share names
    (libvirtd and QEMU certificates of the same machine); two hosts may not,
    or either could impersonate the other. A wildcard DNS name also claims
    every name it covers.
    """
    owner = {}
    conflicts = []
    reported = set()

    def clash(shown, first, second):
        pair = (shown, first[0], second[0])
        if pair not in reported:
            reported.add(pair)
            conflicts.append('%s is claimed by two hosts: %s (%s) and %s (%s)' % (
                shown, first[0], first[1], second[0], second[1]))

    for host, name, keys in claims:
        for key in sorted(keys, key=lambda k: (k[0], '%s' % k[1])):
            first = owner.setdefault(key, (host, name))
            if first[0] != host:
                clash('%s' % key[1], first, (host, name))
    wildcards = [(key[1], holder) for key, holder in owner.items() if key[0] == 'dns' and key[1].startswith('*.')]
    for pattern, holder in sorted(wildcards):
        for key, other in sorted(owner.items(), key=lambda item: (item[0][0], '%s' % item[0][1])):
            if (key[0] == 'dns' and other[0] != holder[0] and not key[1].startswith('*.')
                    and name_in_sans(key[1], [pattern], [])):
                clash('%s (covered by %s)' % (key[1], pattern), holder, other)
    return conflicts


def sign_requests(ca_key, ca_cert, requests, validity_days=365, renew_before_days=30, min_rsa_bits=3072,
                  now=None, force=False):
    """Decide and issue for a whole batch; validate everything before signing anything.

    `requests` is a list of dicts: name, csr (PEM), profile, subject (dict),
    dns, ip (lists), current (PEM or None), optional validity_days and host
    (see :func:`request_host`).
    Returns a dict name -> result (certificate PEM, renewed, reasons, facts).
    Raises X509Error listing every bad request at once, including every name
    that two hosts claim (see :func:`name_conflicts`).
    """
    now = now or utcnow()
    errors = []
    prepared = []
    claims = []
    seen = set()
    for req in requests:
        name = req.get('name')
        try:
            if not name:
                raise X509Error('every request needs a name')
            if name in seen:
                raise X509Error('duplicate request name')
            seen.add(name)
            csr = load_csr(req.get('csr') or '')
            check_csr(csr, min_rsa_bits)
            profile = req.get('profile') or 'server'
            profile_eku(profile)
            dns, ip = normalize_sans(req.get('dns'), req.get('ip'))
            subject = req.get('subject') or {}
            build_name(subject)
            if profile == 'server':
                if not dns and not ip:
                    raise X509Error('a server certificate needs at least one DNS name or IP address')
                cn = subject.get('CN')
                if cn and not name_in_sans(cn, dns, ip):
                    raise X509Error('the CN %s must also be in the subjectAltName' % cn)
            days = int(req.get('validity_days') or validity_days)
            if days < 1:
                raise X509Error('validity_days must be positive')
            if renew_before_days >= days:
                raise X509Error('the renewal window (%d days) must be shorter than the validity (%d days), '
                                'or every run would re-issue' % (renew_before_days, days))
            prepared.append((name, csr, profile, subject, dns, ip, days, req.get('current')))
            claims.append((request_host(req), name, claimed_names(profile, subject, dns, ip)))
        except X509Error as exc:
            errors.append('%s: %s' % (name or '<unnamed>', exc))
    errors.extend(name_conflicts(claims))
    if errors:
        raise X509Error('refusing to sign anything; bad requests: ' + '; '.join(errors))

    results = {}
    for name, csr, profile, subject, dns, ip, days, current in prepared:
        public_key = csr.public_key()
        reasons = ['forced: re-issue requested'] if force else renewal_reasons(
            current, ca_cert, public_key, subject, dns, ip, profile, renew_before_days, now, days)
        if reasons:
            cert = issue_certificate(ca_key, ca_cert, public_key, subject, dns, ip, profile, days, now)
        else:
            cert = current if isinstance(current, x509.Certificate) else load_certificate(current)
        result = describe(cert)
        result.update(name=name, profile=profile, renewed=bool(reasons), reasons=reasons,
                      certificate=_to_text(certificate_pem(cert)))
        if reasons and current:
            try:
                result['previous'] = describe(load_certificate(current))
            except X509Error:
                result['previous'] = None
        results[name] = result
    return results


# --------------------------------------------------------------------------
# Files: never through a link a user could plant
# --------------------------------------------------------------------------
#
# The modules run as root on paths inside users' home directories
# (~/.pki/libvirt/clientkey.pem).  A user who makes such a path, or one of its
# directories, a symlink could make root read, write, chown or chmod a
# root-only file.  So every path is walked one component at a time from an
# open directory (openat-style, with dir_fd): a symlink is followed only when
# it belongs to root (or to the user running the module, who gains nothing by
# fooling himself), the last component must not be a symlink at all, and every
# open uses O_NOFOLLOW, so a link planted between the check and the open makes
# the open fail instead of following it.

_MAX_SYMLINKS = 40
_O_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)
_O_DIRECTORY = getattr(os, 'O_DIRECTORY', 0)
_O_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)
_O_NONBLOCK = getattr(os, 'O_NONBLOCK', 0)


class UnsafePathError(X509Error):
    """A path goes through a symlink that a user could have planted."""


def _trusted_link_owners():
    return (0, os.geteuid())


def _user_link(path, component, uid):
    return UnsafePathError('refusing %s: %s is a symlink owned by uid %d (not root); '
                           'a user could point it at a root-only file' % (path, component, uid))


def _final_link(path, uid):
    """A link as the file itself is refused whoever owns it."""
    if uid not in _trusted_link_owners():
        return _user_link(path, path, uid)
    return UnsafePathError('refusing %s: %s is a symlink; a key or certificate file must be a regular file, '
                           'not a link that could point at another file' % (path, path))


def _lstat_at(dir_fd, name):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def _open_parent(path, missing_ok=False):
    """(fd of the directory that holds `path`'s last component, that component).

    Every directory from / down is checked as described above.  A missing
    directory raises X509Error 'directory ... does not exist', or returns
    (None, name) when `missing_ok` (check mode: the play would create it).
    """
    path = '%s' % path
    directory, base = os.path.split(path)
    if not base or base in ('.', '..'):
        raise X509Error('%s does not name a file' % path)
    pending = directory.split('/') if directory else []
    shown = '/' if path.startswith('/') else '.'
    fd = os.open(shown, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            if name in ('', '.'):
                continue
            here = os.path.normpath(os.path.join(shown, name))
            st = _lstat_at(fd, name)
            if st is None:
                if missing_ok:
                    os.close(fd)
                    return None, base
                raise X509Error('directory %s does not exist' % (directory or '.'))
            if stat.S_ISLNK(st.st_mode):
                if st.st_uid not in _trusted_link_owners():
                    raise _user_link(path, here, st.st_uid)
                links += 1
                if links > _MAX_SYMLINKS:
                    raise X509Error('refusing %s: too many levels of symbolic links' % path)
                target = os.readlink(name, dir_fd=fd)
                again = _lstat_at(fd, name)
                if again is None or (again.st_ino, again.st_dev, again.st_uid) != (st.st_ino, st.st_dev, st.st_uid):
                    raise UnsafePathError('refusing %s: %s changed while it was checked' % (path, here))
                if target.startswith('/'):
                    os.close(fd)
                    fd = -1  # nothing to close should the next open fail
                    fd = os.open('/', os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
                    shown = '/'
                pending[0:0] = target.split('/')
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise X509Error('refusing %s: %s is not a directory' % (path, here))
            try:
                child = os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    raise UnsafePathError('refusing %s: %s changed while it was checked' % (path, here))
                raise
            os.close(fd)
            fd = child
            shown = here
        return fd, base
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def _check_final(path, dir_fd, base):
    """lstat of the last component (None when absent); refuse a link or anything but a regular file."""
    st = _lstat_at(dir_fd, base)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise _final_link(path, st.st_uid)
    if not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise X509Error('refusing %s: it is a directory, not a regular file' % path)
        raise X509Error('refusing %s: it is not a regular file' % path)
    return st


def _open_final(path, dir_fd, base, flags):
    """Open the last component without following a link; (fd, fstat) or (None, None) when absent."""
    try:
        fd = os.open(base, flags | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None, None
        if exc.errno == errno.ELOOP:
            st = _lstat_at(dir_fd, base)
            raise _final_link(path, st.st_uid if st is not None else -1)
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        raise X509Error('refusing %s: it is not a regular file' % path)
    return fd, st


def check_path(path, missing_ok=False):
    """Raise X509Error unless `path` can safely be read, written and chowned as root.

    No component may be a symlink owned by anyone but root (or the user running
    the module), the file itself must be a regular file or absent, and its
    directory must exist unless `missing_ok` (check mode).
    """
    dir_fd, base = _open_parent(path, missing_ok)
    if dir_fd is None:
        return
    try:
        _check_final(path, dir_fd, base)
    finally:
        os.close(dir_fd)


def read_file(path):
    """File bytes, or None when it (or its directory) does not exist; never through a user's link."""
    try:
        dir_fd, base = _open_parent(path, missing_ok=True)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    if dir_fd is None:
        return None
    try:
        fd, _st = _open_final(path, dir_fd, base, os.O_RDONLY)
    finally:
        os.close(dir_fd)
    if fd is None:
        return None
    with os.fdopen(fd, 'rb') as handle:
        return handle.read()


def atomic_write(path, data, mode=0o600):
    """Write through a 0600 temp file in the same (checked) directory and rename over `path`.

    The secret never sits in a file with wider permissions than `mode`, and a
    reader never sees a half-written key or certificate.
    """
    dir_fd, base = _open_parent(path)
    try:
        _check_final(path, dir_fd, base)
        tmp = None
        for _attempt in range(100):
            name = '.secvirt-%s' % binascii.hexlify(os.urandom(6)).decode('ascii')
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o600,
                             dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    continue
                raise
            tmp = name
            break
        if tmp is None:
            raise X509Error('cannot create a temporary file in %s' % os.path.dirname(path))
        try:
            with os.fdopen(fd, 'wb') as handle:
                os.fchmod(handle.fileno(), mode & 0o600)
                handle.write(_to_bytes(data))
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, base, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except Exception:
            if _lstat_at(dir_fd, tmp) is not None:
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


def resolve_owner(owner, group):
    """(uid, gid) from user and group names or numbers; X509Error when unknown."""
    ids = []
    for value, lookup, what in ((owner, lambda n: pwd.getpwnam(n).pw_uid, 'user'),
                                (group, lambda n: grp.getgrnam(n).gr_gid, 'group')):
        text = ('%s' % value).strip()
        if text.isdigit():
            ids.append(int(text))
            continue
        try:
            ids.append(lookup(text))
        except KeyError:
            raise X509Error('unknown %s %r' % (what, text))
    return tuple(ids)


def set_attributes(path, uid, gid, mode, check_mode=False):
    """Give an existing regular file owner, group and mode through its descriptor (never a link).

    Returns whether anything was (or in check mode would be) changed; False
    when the file does not exist.
    """
    dir_fd, base = _open_parent(path, missing_ok=check_mode)
    if dir_fd is None:
        return False
    try:
        fd, st = _open_final(path, dir_fd, base, os.O_RDONLY)
    finally:
        os.close(dir_fd)
    if fd is None:
        return False
    try:
        changed = False
        if (st.st_uid, st.st_gid) != (uid, gid):
            changed = True
            if not check_mode:
                os.fchown(fd, uid, gid)
        # chown clears set-id bits: compare the mode after it
        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            changed = True
            if not check_mode:
                os.fchmod(fd, mode)
        return changed
    finally:
        os.close(fd)


def stat_file(path):
    """lstat of `path` reached safely, or None (absent, unsafe or unreadable)."""
    try:
        dir_fd, base = _open_parent(path, missing_ok=True)
        if dir_fd is None:
            return None
        try:
            return _lstat_at(dir_fd, base)
        finally:
            os.close(dir_fd)
    except (X509Error, OSError):
        return None


def parse_mode(value, where='', secret=True):
    """Octal mode string -> int; refuse modes that expose a secret or make files executable."""
    try:
        mode = int('%s' % value, 8)
    except (TypeError, ValueError):
        raise X509Error('%s: mode %r is not an octal mode' % (where, value))
    if secret and mode & 0o007:
        raise X509Error('%s: mode %s would let other users read or change a private key' % (where, value))
    if mode & 0o7000 or mode & 0o111:
        raise X509Error('%s: mode %s has execute or special bits' % (where, value))
    return mode


def plan_key(path, key_type, regenerate=False):
    """(existing key or None, reason, file bytes) for a key file that must hold a `key_type` key.

    reason is '' when the existing key is kept, otherwise missing, unreadable,
    type (another key type than wanted) or regenerate.
    """
    data = read_file(path)
    if data is None:
        return None, 'missing', data
    try:
        key = load_private_key(data)
    except X509Error:
        return None, 'unreadable', data
    if key_type_of(key) != key_type:
        return None, 'type', data
    if regenerate:
        return None, 'regenerate', data
    return key, '', data


def file_summary(path, data, kind='key', with_attrs=True):
    """One log-safe line about a key or certificate file (never its secret content)."""
    if data is None:
        return '%s: absent\n' % path
    attrs = ''
    st = stat_file(path) if with_attrs else None
    if st is not None and stat.S_ISREG(st.st_mode):
        attrs = ' mode %04o uid %d gid %d' % (st.st_mode & 0o7777, st.st_uid, st.st_gid)
    try:
        if kind == 'key':
            key = load_private_key(data)
            what = '%s key %s' % (key_type_of(key), public_key_fingerprint(key)[:23])
        else:
            cert = load_certificate(data)
            what = 'certificate %s serial %x not after %s' % (
                name_to_string(cert.subject), cert.serial_number, iso(not_after(cert)))
    except X509Error:
        what = 'unreadable %s' % kind
    return '%s: %s%s\n' % (path, what, attrs)


def _to_bytes(value):
    if isinstance(value, bytes):
        return value
    return ('%s' % value).encode('utf-8')


def _to_text(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return '%s' % (value,)
