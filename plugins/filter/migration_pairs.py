# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: migration_pairs
short_description: Check that every source hypervisor can verify every destination's QEMU certificate
version_added: 0.2.0
author:
  - secvirt.kvm contributors (@secvirt)
description:
  - For each pair (source, destination) of a migration group, the source QEMU connects to the destination's
    C(migration_host) and verifies its certificate with its own CA file. This filter says, for each pair, why
    that would fail - the name is not in the certificate's subjectAltName (DNS or IP), the certificate was not
    issued by the source's CA, it lacks the serverAuth usage - before a migration does.
  - Used by the C(secvirt.kvm.qemu_tls) role before it changes anything.
options:
  _input:
    description:
      - A list of pairs, each a dict with C(source), C(destination), C(name) (what the source connects to),
        C(certificate) (the destination's C(server-cert.pem), PEM) and C(ca) (the source's C(ca-cert.pem), PEM;
        it may hold several CAs).
    type: list
    elements: dict
    required: true
'''

EXAMPLES = r'''
- name: Refuse pairs of hypervisors that could not migrate over TLS
  ansible.builtin.assert:
    that: __pairs | secvirt.kvm.migration_pairs | length == 0
'''

RETURN = r'''
_value:
  description: One message per problem, naming the pair.
  type: list
  elements: str
'''

import ipaddress

from ansible.errors import AnsibleFilterError

try:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID
except ImportError:  # pragma: no cover - reported when the filter runs
    x509 = None


def _certs(pem):
    data = pem.encode('ascii') if hasattr(pem, 'encode') else pem
    if hasattr(x509, 'load_pem_x509_certificates'):
        return x509.load_pem_x509_certificates(data)
    return [x509.load_pem_x509_certificate(data)]


def _names(cert):
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    dns = set(n.lower() for n in san.get_values_for_type(x509.DNSName))
    ips = set(san.get_values_for_type(x509.IPAddress))
    return dns, ips


def _has_name(cert, name):
    dns, ips = _names(cert)
    try:
        return ipaddress.ip_address(name.strip('[]')) in ips
    except ValueError:
        return name.lower().rstrip('.') in dns


def _issued_by(cert, cas):
    for ca in cas:
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except Exception:  # signature or key type mismatch: try the next CA
            continue
    return False


def _server_auth(cert):
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.SERVER_AUTH in eku


def migration_pairs(pairs):
    if x509 is None:
        raise AnsibleFilterError('migration_pairs needs the Python cryptography package on the controller')
    problems = []
    for pair in pairs:
        label = '%s -> %s (%s)' % (pair['source'], pair['destination'], pair['name'])
        try:
            cert = _certs(pair['certificate'])[0]
            cas = _certs(pair['ca'])
        except (ValueError, IndexError) as exc:
            problems.append('%s: cannot read the certificates: %s' % (label, exc))
            continue
        if not _has_name(cert, pair['name']):
            dns, ips = _names(cert)
            problems.append('%s: %s is not in %s\'s QEMU certificate (subjectAltName: %s); the source QEMU would '
                            'refuse the destination' % (label, pair['name'], pair['destination'],
                                                        ', '.join(sorted(dns) + sorted(str(i) for i in ips)) or 'none'))
        if not _issued_by(cert, cas):
            problems.append('%s: %s\'s QEMU certificate (issuer %s) was not issued by a CA in %s\'s ca-cert.pem'
                            % (label, pair['destination'], cert.issuer.rfc4514_string(), pair['source']))
        if not _server_auth(cert):
            problems.append('%s: %s\'s QEMU certificate lacks the serverAuth key usage' % (label, pair['destination']))
    return problems


class FilterModule(object):
    def filters(self):
        return {'migration_pairs': migration_pairs}
