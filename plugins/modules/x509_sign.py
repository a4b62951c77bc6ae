#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: x509_sign
short_description: Sign the CSRs of many hosts in one call and decide which certificates need renewal
version_added: 0.1.0
description:
  - One controller-side call for a whole play. For every request it checks
    the CSR (its signature proves the requester holds the key; the key must
    be ECDSA P-256/P-384/P-521 or RSA of at least O(min_rsa_bits) bits),
    decides whether the certificate the host currently has must be re-issued,
    and signs a new one only then.
  - A certificate is re-issued when it is missing or unreadable, was signed
    by another CA (the CA changed), belongs to another key than the CSR (the
    host key changed), its subject, subjectAltName or extended key usages no
    longer match the request, or it expires within O(renew_before_days) days.
    RV(renewed) lists what was renewed and why.
  - The CA decides the certificate content; only the public key is taken from
    the CSR. Subject and subjectAltName come from O(requests[].subject),
    O(requests[].dns) and O(requests[].ip) (the inventory), not from the CSR.
  - Every request is validated before anything is signed; one bad request
    fails the call and names all bad requests.
  - No name may be claimed by two hosts (see O(requests[].host)). DNS names
    (case-insensitive, trailing dot ignored, a wildcard claiming every name it
    covers), IP addresses (by value) and the CN of server certificates are
    compared across hosts; one clash fails the whole call. The CN of a client
    certificate is an identity, not a host name, and is not compared.
  - Nothing is written anywhere. The certificates are returned, and the
    hosts install them (for example with M(secvirt.kvm.x509_install)).
    Signing therefore also happens in check mode, so that later check-mode
    tasks can show what would change.
options:
  ca_cert_path:
    description: CA certificate (PEM) on the host running the module.
    type: path
    required: true
  ca_key_path:
    description: CA private key (PEM, normally encrypted).
    type: path
    required: true
  ca_passphrase:
    description: Passphrase of the CA key. Leave unset only for an unencrypted key.
    type: str
  requests:
    description: Certificates wanted, one entry each.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Unique identifier, for example C(kvm01/server); keys of RV(certificates).
          - The part before the first C(/) names the host the request belongs to, unless O(requests[].host) is set.
        type: str
        required: true
      host:
        description:
          - Host (inventory name) the certificate is for; defaults to the part of O(requests[].name) before
            the first C(/), or the whole name.
          - Requests of one host may share names (for example the libvirtd and QEMU certificates of one
            machine); a DNS name, IP address or server CN claimed by two different hosts makes the whole
            call fail, because either host could then impersonate the other.
        type: str
      csr:
        description: PEM CSR made with the key on the host (M(secvirt.kvm.x509_csr) RV(secvirt.kvm.x509_csr#module:requests.csr)).
        type: str
        required: true
      profile:
        description:
          - V(server) gives extendedKeyUsage serverAuth and clientAuth (libvirt hosts are also
            clients of each other during peer-to-peer migration, QEMU uses one certificate for both
            directions of migration/NBD TLS); at least one DNS name or IP address is required and
            the CN must be among them.
          - V(client) gives extendedKeyUsage clientAuth.
        type: str
        choices: [server, client]
        default: server
      subject:
        description: Subject as a mapping in certificate order, for example O=Example then CN=kvm01.example.org.
        type: dict
        required: true
      dns:
        description: DNS names for the subjectAltName.
        type: list
        elements: str
        default: []
      ip:
        description: IP addresses for the subjectAltName.
        type: list
        elements: str
        default: []
      current:
        description: The certificate the host has now (PEM), empty when none.
        type: str
        default: ''
      validity_days:
        description: Lifetime of a new certificate; defaults to O(validity_days).
        type: int
  validity_days:
    description: Lifetime of new certificates (capped at the CA's expiry).
    type: int
    default: 365
  renew_before_days:
    description: Re-issue certificates that expire within this many days.
    type: int
    default: 30
  min_rsa_bits:
    description: Smallest RSA key accepted in a CSR.
    type: int
    default: 3072
  force:
    description: Re-issue every certificate of the batch (for example after a suspected CA compromise drill).
    type: bool
    default: false
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.x509
author:
  - secvirt.kvm contributors (@secvirt)
'''

EXAMPLES = r'''
- name: Sign the CSRs of every host of the play in one call
  secvirt.kvm.x509_sign:
    ca_cert_path: "{{ pki_ca_dir }}/cacert.pem"
    ca_key_path: "{{ pki_ca_dir }}/private/cakey.pem"
    ca_passphrase: "{{ vault_pki_ca_passphrase }}"
    requests: "{{ ansible_play_hosts | map('extract', hostvars, 'my_cert_requests') | flatten }}"
    renew_before_days: 30
  delegate_to: localhost
  run_once: true
  become: false
  no_log: true
  register: signed
'''

RETURN = r'''
certificates:
  description: Per request name, the certificate the host must have and facts about it.
  returned: always
  type: dict
  contains:
    certificate:
      description: PEM certificate (new or the current one).
      type: str
    renewed:
      description: Whether a new certificate was issued.
      type: bool
    reasons:
      description: "Why: strings C(<code>: <detail>) with code one of missing, unreadable, ca, key, subject, san, profile, expiring, forced."
      type: list
      elements: str
    subject:
      description: Subject (RFC 4514, as GnuTLS and libvirt's tls_allowed_dn_list print it).
      type: str
    serial:
      description: Serial number (hex).
      type: str
    not_after:
      description: Expiry (UTC, ISO 8601).
      type: str
    dns:
      description: DNS names in the subjectAltName.
      type: list
      elements: str
    ip:
      description: IP addresses in the subjectAltName.
      type: list
      elements: str
    public_key_fingerprint:
      description: SHA-256 of the certified public key.
      type: str
renewed:
  description: What was (or in check mode would be) issued, and why.
  returned: always
  type: list
  elements: dict
  sample: [{name: kvm01/server, reasons: ["expiring: not after 2026-12-01T10:00:00Z, inside the 30-day renewal window"]}]
ca_fingerprint:
  description: SHA-256 fingerprint of the signing CA certificate.
  returned: always
  type: str
'''

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.secvirt.kvm.plugins.module_utils import x509 as x
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_files as xf
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_issue as xi


def summary(info):
    if not info:
        return ''
    return '%s serial %s not after %s san %s\n' % (
        info['subject'], info['serial'], info['not_after'], ','.join(info['dns'] + info['ip']))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ca_cert_path=dict(type='path', required=True),
            ca_key_path=dict(type='path', required=True, no_log=False),
            ca_passphrase=dict(type='str', no_log=True),
            requests=dict(type='list', elements='dict', required=True, options=dict(
                name=dict(type='str', required=True),
                host=dict(type='str'),
                csr=dict(type='str', required=True),
                profile=dict(type='str', default='server', choices=list(x.PROFILES)),
                subject=dict(type='dict', required=True),
                dns=dict(type='list', elements='str', default=[]),
                ip=dict(type='list', elements='str', default=[]),
                current=dict(type='str', default=''),
                validity_days=dict(type='int'),
            )),
            validity_days=dict(type='int', default=365),
            renew_before_days=dict(type='int', default=30),
            min_rsa_bits=dict(type='int', default=3072),
            force=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    if not x.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=str(x.CRYPTOGRAPHY_IMPORT_ERROR))
    p = module.params
    if p['validity_days'] < 1 or p['renew_before_days'] < 0:
        module.fail_json(msg='validity_days must be positive and renew_before_days not negative')

    try:
        cert_data = xf.read_file(p['ca_cert_path'])
        key_data = xf.read_file(p['ca_key_path'])
        if cert_data is None or key_data is None:
            module.fail_json(msg='CA certificate or key missing (%s, %s); create it with secvirt.kvm.x509_ca'
                             % (p['ca_cert_path'], p['ca_key_path']))
        ca_cert = x.load_certificate(cert_data)
        ca_key = x.load_private_key(key_data, p['ca_passphrase'] if x.is_encrypted_pem(key_data) else None)
        problems = x.check_ca(ca_cert, ca_key)
        if problems:
            module.fail_json(msg='the CA is not usable: %s' % '; '.join(problems))
        results = xi.sign_requests(ca_key, ca_cert, p['requests'], validity_days=p['validity_days'],
                                   renew_before_days=p['renew_before_days'], min_rsa_bits=p['min_rsa_bits'],
                                   force=p['force'])
    except x.X509Error as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())

    renewed = [dict(name=name, reasons=r['reasons']) for name, r in results.items() if r['renewed']]
    result = dict(changed=bool(renewed), certificates=results, renewed=renewed,
                  ca_fingerprint=x.describe(ca_cert)['fingerprint'])
    if module._diff:
        before, after = [], []
        for name, r in sorted(results.items()):
            if r['renewed']:
                before.append('%s: %s' % (name, summary(r.get('previous')) or 'none\n'))
                after.append('%s: %s' % (name, summary(r)))
        result['diff'] = dict(before=''.join(before), after=''.join(after))
    for r in results.values():
        r.pop('previous', None)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
