# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Leaf certificates from the private CA: issuing, renewal decisions and batch signing.

Runs on the controller (the x509_sign module).  Like ``x509`` it is plain
Python on top of ``cryptography`` and must work with cryptography 38.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import ipaddress

try:
    from cryptography import x509
except ImportError:  # pragma: no cover - reported through x509.HAS_CRYPTOGRAPHY
    pass

from ansible_collections.secvirt.kvm.plugins.module_utils.x509 import (
    BACKDATE, X509Error, _hash_for, _ip_sort_key, _to_text, build_name, certificate_pem, check_csr, describe, eku_of,
    iso, keys_match, load_certificate, load_csr, name_in_sans, name_to_string, normalize_sans, not_after, profile_eku,
    public_key_fingerprint, san_extension, sans_of, signed_by, utcnow,
)


# --------------------------------------------------------------------------
# Issuing
# --------------------------------------------------------------------------

def subject_key_identifier(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


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
