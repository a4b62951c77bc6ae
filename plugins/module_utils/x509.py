# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""X.509 logic for the private libvirt/VNC/SPICE/migration CA.

Plain Python on top of ``cryptography`` (no Ansible import) so that the unit
tests call it directly.  It runs on the controller (CA, signing) and on the
managed hosts (keys, CSRs, verification), so it must work with the oldest
``cryptography`` we meet on a target: 38.0 (Debian 12).  Anything newer is
used through a fallback (see :func:`not_after`).

Issuing leaf certificates and batch signing live in ``x509_issue``, key and
certificate files (safe paths, atomic writes, owner and mode) in ``x509_files``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import hashlib
import ipaddress
import re

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


# --------------------------------------------------------------------------
# Profiles
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


def _to_bytes(value):
    if isinstance(value, bytes):
        return value
    return ('%s' % value).encode('utf-8')


def _to_text(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return '%s' % (value,)
