#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: x509_verify
short_description: Check installed certificates against their CA, their keys and the names clients use
version_added: 0.1.0
description:
  - Read-only. For each entry of O(certificates), reads the certificate, the
    CA certificate and (if given) the private key from the host's files and
    checks that the certificate is signed by the CA, is currently valid (and
    for at least O(min_days_left) more days), belongs to the key, carries
    every name of O(certificates[].names) in its subjectAltName and fits
    O(certificates[].profile).
  - Fails listing every problem when O(fail_on_problems=true).
options:
  certificates:
    description: Certificates to check.
    type: list
    elements: dict
    required: true
    suboptions:
      cert_path:
        description: Certificate file (PEM).
        type: path
        required: true
      ca_path:
        description: CA certificate file (PEM) it must chain to; a bundle of CAs (CA rollover) is checked against the CA that issued the certificate.
        type: path
        required: true
      key_path:
        description: Private key file that must belong to the certificate.
        type: path
      names:
        description: Names (DNS or IP) that must be in the subjectAltName.
        type: list
        elements: str
        default: []
      profile:
        description: Expected usage (V(server) needs serverAuth and clientAuth, V(client) clientAuth).
        type: str
        choices: [server, client]
  min_days_left:
    description: Report certificates expiring within this many days.
    type: int
    default: 0
  fail_on_problems:
    description: Fail when any certificate has a problem.
    type: bool
    default: true
extends_documentation_fragment:
  - secvirt.kvm.attributes.read_only
  - secvirt.kvm.x509
author:
  - secvirt.kvm contributors (@secvirt)
'''

EXAMPLES = r'''
- name: Prove the libvirt server certificate chains to the CA and fits its key
  secvirt.kvm.x509_verify:
    certificates:
      - cert_path: /etc/pki/libvirt/servercert.pem
        ca_path: /etc/pki/CA/cacert.pem
        key_path: /etc/pki/libvirt/private/serverkey.pem
        names: ["{{ ansible_facts['fqdn'] }}"]
        profile: server
    min_days_left: 7
'''

RETURN = r'''
results:
  description: One entry per certificate.
  returned: always
  type: list
  elements: dict
  contains:
    cert_path:
      description: The certificate checked.
      type: str
    ok:
      description: Whether no problem was found.
      type: bool
    problems:
      description: What is wrong.
      type: list
      elements: str
    subject:
      description: Subject (RFC 4514).
      type: str
    not_after:
      description: Expiry (UTC, ISO 8601).
      type: str
problems:
  description: All problems, prefixed with the certificate path.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.secvirt.kvm.plugins.module_utils import x509 as x
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_crl as xc
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_files as xf


def check_one(item, min_days_left):
    out = dict(cert_path=item['cert_path'], ok=False, problems=[], subject='', not_after='')
    try:
        data = xf.read_file(item['cert_path'])
        ca_data = xf.read_file(item['ca_path'])
        if data is None:
            raise x.X509Error('missing')
        if ca_data is None:
            raise x.X509Error('CA certificate %s missing' % item['ca_path'])
        cert = x.load_certificate(data)
        # a bundle during a CA rollover: check against the CA that issued it
        cas = xc.load_ca_bundle(ca_data)
        ca = next((c for c in cas if x.signed_by(cert, c)), cas[0])
        key = None
        if item['key_path']:
            key_data = xf.read_file(item['key_path'])
            if key_data is None:
                raise x.X509Error('private key %s missing' % item['key_path'])
            key = x.load_private_key(key_data)
        info = x.describe(cert)
        out.update(subject=info['subject'], not_after=info['not_after'])
        out['problems'] = x.verify_certificate(cert, ca, private_key=key, names=item['names'],
                                               profile=item['profile'], min_days_left=min_days_left)
    except (x.X509Error, OSError) as exc:
        out['problems'] = [str(exc)]
    out['ok'] = not out['problems']
    return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            certificates=dict(type='list', elements='dict', required=True, options=dict(
                cert_path=dict(type='path', required=True),
                ca_path=dict(type='path', required=True),
                key_path=dict(type='path', no_log=False),
                names=dict(type='list', elements='str', default=[]),
                profile=dict(type='str', choices=list(x.PROFILES)),
            )),
            min_days_left=dict(type='int', default=0),
            fail_on_problems=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    if not x.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=str(x.CRYPTOGRAPHY_IMPORT_ERROR))
    results = [check_one(item, module.params['min_days_left']) for item in module.params['certificates']]
    problems = ['%s: %s' % (r['cert_path'], p) for r in results for p in r['problems']]
    if problems and module.params['fail_on_problems']:
        module.fail_json(msg='; '.join(problems), results=results, problems=problems)
    module.exit_json(changed=False, results=results, problems=problems)


if __name__ == '__main__':
    main()
