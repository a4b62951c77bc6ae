"""Revocation for the private CA: the controller's index of issued and revoked
serials, and the signed CRL that libvirt, QEMU and the clients read.

Runs on the controller (the x509_crl module), next to the CA key. Plain Python
on top of ``cryptography`` (38 and later), so the unit tests call it directly.

The index is JSON, written 0600 next to the CA::

    {"version": 1,
     "ca_fingerprint": "<SHA-256 of the CA certificate>",
     "crl_number": 3,
     "issued": {"<serial hex>": {"name": "station/client", "subject": "...", "not_after": "..."}},
     "revoked": {"<serial hex>": {"name": "station/client", "reason": "key_compromise",
                                  "revoked_at": "...", "not_after": "..."}}}

Revocation is permanent: dropping an entry from the user's list does not
un-revoke a serial (a CRL may not bring a certificate back, except from
certificateHold, which this CA never uses).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import re

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
except ImportError:  # pragma: no cover - reported through x509.HAS_CRYPTOGRAPHY
    pass

from ansible_collections.secvirt.kvm.plugins.module_utils.x509 import (
    BACKDATE, X509Error, _hash_for, _to_bytes, fingerprint, iso, load_certificate, name_to_string, not_after, signed_by,
    utcnow,
)
from ansible_collections.secvirt.kvm.plugins.module_utils.x509_issue import subject_key_identifier

INDEX_VERSION = 1

# RFC 5280 reason codes this CA uses (snake_case, as Ansible options are
# written). "unspecified" is not encoded (RFC 5280 5.3.1: omit the
# extension rather than use it); certificateHold is never used, because a
# held certificate could come back and this index has no "unhold".
REASONS = {
    'unspecified': None,
    'key_compromise': 'key_compromise',
    'ca_compromise': 'ca_compromise',
    'affiliation_changed': 'affiliation_changed',
    'superseded': 'superseded',
    'cessation_of_operation': 'cessation_of_operation',
    'privilege_withdrawn': 'privilege_withdrawn',
}

_SERIAL_HEX = re.compile(r'^(0x)?[0-9a-f]+$')


def normalize_serial(value):
    """Lower-case hex without leading zeros, from '3A:0F...', '0x3a0f' or an int."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise X509Error('serial %r: must be positive' % value)
        return '%x' % value
    text = ('%s' % value).strip().lower().replace(':', '')
    if not text or not _SERIAL_HEX.match(text):
        raise X509Error('serial %r: give it in hexadecimal, as openssl x509 -serial prints it' % value)
    number = int(text[2:] if text.startswith('0x') else text, 16)
    if number <= 0:
        raise X509Error('serial %r: must be positive' % value)
    return '%x' % number


def empty_index(ca_cert):
    return dict(version=INDEX_VERSION, ca_fingerprint=ca_fingerprint(ca_cert), crl_number=0, issued={}, revoked={})


def ca_fingerprint(ca_cert):
    return fingerprint(ca_cert.public_bytes(serialization.Encoding.DER))


def load_index(data, ca_cert):
    """The index from its JSON text (None: a fresh one); it must belong to this CA."""
    if data is None:
        return empty_index(ca_cert)
    try:
        index = json.loads(data.decode('utf-8') if isinstance(data, bytes) else data)
    except ValueError as exc:
        raise X509Error('the revocation index is not valid JSON: %s' % exc)
    if not isinstance(index, dict) or index.get('version') != INDEX_VERSION:
        raise X509Error('the revocation index has an unknown format (version %r)'
                        % (index.get('version') if isinstance(index, dict) else None))
    if index.get('ca_fingerprint') != ca_fingerprint(ca_cert):
        raise X509Error('the revocation index belongs to another CA (SHA-256 %s); this CA is %s'
                        % (index.get('ca_fingerprint'), ca_fingerprint(ca_cert)))
    for key, kind in (('issued', dict), ('revoked', dict), ('crl_number', int)):
        if not isinstance(index.get(key), kind):
            raise X509Error('the revocation index lacks a valid %r' % key)
    return index


def dump_index(index):
    return (json.dumps(index, indent=1, sort_keys=True) + '\n').encode('utf-8')


def issued_entries(issued):
    """[{name, certificate}] from {name: PEM or {certificate: PEM, ...}} (x509_sign's certificates)."""
    out = []
    for name, value in sorted((issued or {}).items()):
        pem = value.get('certificate') if isinstance(value, dict) else value
        if not pem:
            raise X509Error('issued %s: no certificate' % name)
        out.append(dict(name=name, certificate=pem))
    return out


def record_issued(index, issued, ca_cert):
    """Add certificates signed by this CA to the index. Returns the serials added."""
    added = []
    problems = []
    for entry in issued:
        try:
            cert = load_certificate(entry['certificate'])
        except X509Error as exc:
            problems.append('%s: %s' % (entry['name'], exc))
            continue
        if not signed_by(cert, ca_cert):
            problems.append('%s: not signed by this CA' % entry['name'])
            continue
        serial = '%x' % cert.serial_number
        record = dict(name=entry['name'], subject=name_to_string(cert.subject), not_after=iso(not_after(cert)))
        if index['issued'].get(serial) != record:
            index['issued'][serial] = record
            added.append(serial)
    if problems:
        raise X509Error('cannot record issued certificates: ' + '; '.join(problems))
    return added


def resolve_revocations(index, revoke):
    """Serials (with name and reason) the user's list asks to revoke.

    An entry names a serial, a certificate name (``station/client``: every
    serial ever issued under that name) or a host (every name of that host).
    A name or host with nothing in the index is an error: it is a typo, or the
    certificate was issued before the index existed (then give its serial).
    """
    wanted = {}
    problems = []
    for entry in revoke:
        reason = entry.get('reason') or 'key_compromise'
        if reason not in REASONS:
            problems.append('unknown reason %r (one of %s)' % (reason, ', '.join(sorted(REASONS))))
            continue
        given = [k for k in ('serial', 'name', 'host') if entry.get(k)]
        if len(given) != 1:
            problems.append('each entry needs exactly one of serial, name, host (got %s)' % (', '.join(given) or 'none'))
            continue
        if entry.get('serial'):
            try:
                serial = normalize_serial(entry['serial'])
            except X509Error as exc:
                problems.append(str(exc))
                continue
            known = index['issued'].get(serial, {})
            wanted[serial] = dict(name=known.get('name', ''), reason=reason, not_after=known.get('not_after', ''))
            continue
        if entry.get('name'):
            label = 'name %s' % entry['name']
            hits = [s for s, rec in index['issued'].items() if rec['name'] == entry['name']]
        else:
            label = 'host %s' % entry['host']
            hits = [s for s, rec in index['issued'].items() if rec['name'].split('/', 1)[0] == entry['host']]
        if not hits:
            problems.append('%s: no certificate issued under it is recorded in the index; '
                            'give the serial of a certificate issued before the index existed' % label)
            continue
        for serial in hits:
            rec = index['issued'][serial]
            wanted[serial] = dict(name=rec['name'], reason=reason, not_after=rec['not_after'])
    if problems:
        raise X509Error('bad revocation entries: ' + '; '.join(problems))
    return wanted


def apply_revocations(index, wanted, now=None):
    """Mark serials revoked (keeping the first revocation time). Returns the serials changed."""
    now = now or utcnow()
    changed = []
    for serial, want in sorted(wanted.items()):
        have = index['revoked'].get(serial)
        if have is None:
            index['revoked'][serial] = dict(name=want['name'], reason=want['reason'], revoked_at=iso(now),
                                            not_after=want['not_after'])
            changed.append(serial)
        elif have['reason'] != want['reason']:
            have['reason'] = want['reason']
            changed.append(serial)
    return changed


def _parse_iso(text):
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)


def listed_serials(index, now=None):
    """What the CRL must list: revoked serials whose certificate has not expired yet
    (RFC 5280 lets an expired certificate leave the CRL; unknown expiry stays)."""
    now = now or utcnow()
    out = {}
    for serial, rec in index['revoked'].items():
        if rec.get('not_after') and _parse_iso(rec['not_after']) <= now:
            continue
        out[serial] = rec
    return out


def _crl_time(crl, attr):
    value = getattr(crl, attr + '_utc', None)
    if value is None:
        value = getattr(crl, attr)
        if value is not None:
            value = value.replace(tzinfo=datetime.timezone.utc)
    return value


def load_crl(data):
    try:
        return x509.load_pem_x509_crl(_to_bytes(data))
    except ValueError as exc:
        raise X509Error('not a PEM CRL: %s' % exc)


def crl_entries(crl):
    """{serial hex: reason} of a CRL ('unspecified' when it has no reason)."""
    out = {}
    for revoked in crl:
        try:
            reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
        except x509.ExtensionNotFound:
            reason = 'unspecified'
        out['%x' % revoked.serial_number] = reason
    return out


def describe_crl(crl):
    return dict(issuer=name_to_string(crl.issuer), this_update=iso(_crl_time(crl, 'last_update')),
                next_update=iso(_crl_time(crl, 'next_update')) if _crl_time(crl, 'next_update') else '',
                number=crl_number(crl), serials=sorted(crl_entries(crl)))


def crl_number(crl):
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def crl_problems(crl, ca_cert, listed, renew_before_days, now=None):
    """Why the CRL on disk must be re-signed (an empty list: it is current)."""
    now = now or utcnow()
    problems = []
    if crl.issuer != ca_cert.subject or not crl.is_signature_valid(ca_cert.public_key()):
        problems.append('not signed by this CA')
    next_update = _crl_time(crl, 'next_update')
    if next_update is None:
        problems.append('has no nextUpdate')
    elif next_update <= now:
        problems.append('expired on %s' % iso(next_update))
    elif next_update - now < datetime.timedelta(days=renew_before_days):
        problems.append('nextUpdate %s is within %d days' % (iso(next_update), renew_before_days))
    want = dict((s, rec['reason']) for s, rec in listed.items())
    if crl_entries(crl) != want:
        have = ', '.join(sorted(crl_entries(crl))) or 'no serial'
        problems.append('lists %s instead of %s' % (have, ', '.join(sorted(want)) or 'no serial'))
    return problems


def sign_crl(ca_key, ca_cert, listed, number, validity_days, now=None):
    """A CRL v2 with CRLNumber and AuthorityKeyIdentifier, lastUpdate backdated by
    BACKDATE (as certificates are) so a peer whose clock lags does not see a
    CRL from the future, nextUpdate validity_days from now."""
    now = now or utcnow()
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - BACKDATE)
               .next_update(now + datetime.timedelta(days=validity_days))
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                   subject_key_identifier(ca_cert)), critical=False))
    for serial, rec in sorted(listed.items()):
        entry = (x509.RevokedCertificateBuilder()
                 .serial_number(int(serial, 16))
                 .revocation_date(_parse_iso(rec['revoked_at'])))
        if REASONS.get(rec['reason']):
            entry = entry.add_extension(x509.CRLReason(getattr(x509.ReasonFlags, REASONS[rec['reason']])),
                                        critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca_key, _hash_for(ca_key))


def crl_pem(crl):
    return crl.public_bytes(serialization.Encoding.PEM)


def check_crl_for_install(data, ca_certs, now=None):
    """Refuse a CRL a host must not install: not PEM, not from the CA(s) it trusts, expired."""
    now = now or utcnow()
    crl = load_crl(data)
    issuers = [c for c in ca_certs if c.subject == crl.issuer and crl.is_signature_valid(c.public_key())]
    if not issuers:
        raise X509Error('the CRL (issuer %s) is not signed by the CA being installed' % name_to_string(crl.issuer))
    next_update = _crl_time(crl, 'next_update')
    if next_update is None or next_update <= now:
        raise X509Error('the CRL expired on %s: installing it would make every TLS login fail'
                        % (iso(next_update) if next_update else 'its issue (no nextUpdate)'))
    return crl


def load_ca_bundle(data):
    """Every certificate of a PEM bundle (one or more CAs)."""
    blocks = re.findall(br'-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----', _to_bytes(data), re.S)
    if not blocks:
        raise X509Error('not a PEM certificate (no CERTIFICATE block in the CA bundle)')
    return [load_certificate(b + b'\n') for b in blocks]
