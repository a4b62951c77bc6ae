#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: x509_crl
short_description: Revoke certificates of the private CA and keep its signed CRL current
version_added: 0.2.0
description:
  - Runs on the controller, next to the CA key, in one call for a whole play.
  - Keeps an index of the certificates the CA issued (serial, name, subject,
    expiry) and of the serials it revoked, in O(index_path) (JSON, mode
    0600). The index never leaves the controller; hosts only get the CRL.
  - O(issued) records certificates (normally every certificate of the play,
    from M(secvirt.kvm.x509_sign)), so that a certificate can later be
    revoked by its name (C(station/client)) or its host, for example after
    the host itself is gone from the inventory.
  - O(revoke) adds serials to the revoked set. Revocation is permanent;
    removing an entry from the list does not bring the certificate back
    (this CA never uses certificateHold). Changing an entry's reason
    re-signs the CRL with the new reason.
  - Writes a CRL v2 (CRLNumber, AuthorityKeyIdentifier, a reason per entry
    except V(unspecified), lastUpdate backdated one hour for clock skew) to
    O(crl_path) and returns it, but only once a CRL is in use - some serial
    has been revoked, a CRL already exists at O(crl_path), or
    O(publish_empty=true). Before that RV(crl) is empty and nothing is
    published. A CRL must then be refreshed for as long as it is in use,
    because peers refuse every certificate once it is past its nextUpdate.
  - The CRL is re-signed when it is missing, was not signed by this CA,
    lists other serials or reasons than the index, or its nextUpdate is
    within O(renew_before_days) days; otherwise the file on disk is
    returned unchanged. A revoked certificate that has expired leaves the
    CRL (RFC 5280 5.1.2.6) but stays in the index.
  - In check mode nothing is written, but a CRL that would be signed is
    signed in memory and returned, so later check-mode tasks (the install
    on the hosts) show what would change.
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
  index_path:
    description:
      - The index of issued and revoked serials (JSON). Created with mode 0600 when missing; a wider mode is
        reduced to 0600. It records which CA it belongs to, and the module refuses an index of another CA.
    type: path
    required: true
  crl_path:
    description: Where the signed CRL (PEM) is kept on the controller.
    type: path
    required: true
  issued:
    description:
      - Certificates to record in the index, by name (C(<host>/<identity>)). Each value is the certificate PEM or
        a dict with a C(certificate) key, so the RV(secvirt.kvm.x509_sign#module:certificates) of
        M(secvirt.kvm.x509_sign) can be passed as it is. Each must be signed by the CA.
    type: dict
    default: {}
  revoke:
    description:
      - Certificates to revoke. Each entry gives exactly one of O(revoke[].serial), O(revoke[].name),
        O(revoke[].host).
      - A name or host with no certificate in the index fails the call (a typo must not pass as a revocation).
    type: list
    elements: dict
    default: []
    suboptions:
      serial:
        description: Serial in hex, with or without colons (as C(openssl x509 -serial) prints it). Need not be in the index.
        type: str
      name:
        description: Every certificate ever issued under this name, for example C(station/user-kvmmgr).
        type: str
      host:
        description: Every certificate ever issued to this inventory host (names C(<host>/...)).
        type: str
      reason:
        description: RFC 5280 reason.
        type: str
        default: key_compromise
        choices: [unspecified, key_compromise, ca_compromise, affiliation_changed, superseded,
                  cessation_of_operation, privilege_withdrawn]
  validity_days:
    description: Days from signing to the CRL's nextUpdate.
    type: int
    default: 30
  renew_before_days:
    description: Re-sign the CRL when its nextUpdate is closer than this. Must be smaller than O(validity_days).
    type: int
    default: 10
  publish_empty:
    description: Sign and return a CRL even while nothing has been revoked.
    type: bool
    default: false
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.x509
author:
  - secvirt.kvm contributors (@secvirt)
'''

EXAMPLES = r'''
- name: Revoke the lost laptop's certificates and keep the CRL current
  secvirt.kvm.x509_crl:
    ca_cert_path: "{{ pki_ca_dir }}/cacert.pem"
    ca_key_path: "{{ pki_ca_dir }}/private/cakey.pem"
    ca_passphrase: "{{ vault_pki_ca_passphrase }}"
    index_path: "{{ pki_ca_dir }}/private/index.json"
    crl_path: "{{ pki_ca_dir }}/cacrl.pem"
    issued: "{{ signed.certificates }}"
    revoke:
      - host: laptop-17
        reason: key_compromise
      - serial: "3A:0F:91:5C:22:7B:01"
        reason: cessation_of_operation
  delegate_to: localhost
  run_once: true
  become: false
  no_log: true
  register: crl
'''

RETURN = r'''
crl:
  description: The current CRL (PEM); empty while no CRL is in use.
  returned: always
  type: str
renewed:
  description: Whether the CRL was (or in check mode would be) signed anew.
  returned: always
  type: bool
reasons:
  description: Why the CRL was signed anew (for example C(missing), C(nextUpdate ... is within 10 days)).
  returned: always
  type: list
  elements: str
next_update:
  description: nextUpdate of RV(crl) (UTC, ISO 8601); empty without a CRL.
  returned: always
  type: str
number:
  description: CRLNumber of RV(crl); 0 without a CRL.
  returned: always
  type: int
revoked:
  description: Every revoked serial in the index, with what is known about it. Public information.
  returned: always
  type: list
  elements: dict
  contains:
    serial:
      description: Serial (hex).
      type: str
    name:
      description: Name the certificate was issued under (empty when revoked by an unknown serial).
      type: str
    reason:
      description: RFC 5280 reason.
      type: str
    revoked_at:
      description: When it was revoked (UTC, ISO 8601).
      type: str
    listed:
      description: Whether the CRL lists it (false once the certificate has expired).
      type: bool
newly_revoked:
  description: Serials revoked (or with a changed reason) by this call.
  returned: always
  type: list
  elements: str
recorded:
  description: Serials added to the index of issued certificates by this call.
  returned: always
  type: list
  elements: str
'''

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.secvirt.kvm.plugins.module_utils import x509 as x
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_crl as xc
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_files as xf


def _crl_text(info):
    if not info:
        return ''
    serials = ', '.join(info['serials']) or 'none'
    return 'CRL #%s next update %s revoked %s\n' % (info['number'], info['next_update'], serials)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ca_cert_path=dict(type='path', required=True),
            ca_key_path=dict(type='path', required=True, no_log=False),
            ca_passphrase=dict(type='str', no_log=True),
            index_path=dict(type='path', required=True),
            crl_path=dict(type='path', required=True),
            issued=dict(type='dict', default={}),
            revoke=dict(type='list', elements='dict', default=[], options=dict(
                serial=dict(type='str'),
                name=dict(type='str'),
                host=dict(type='str'),
                reason=dict(type='str', default='key_compromise', choices=sorted(xc.REASONS)),
            )),
            validity_days=dict(type='int', default=30),
            renew_before_days=dict(type='int', default=10),
            publish_empty=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    if not x.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=str(x.CRYPTOGRAPHY_IMPORT_ERROR))
    p = module.params
    if p['validity_days'] < 1 or not 0 <= p['renew_before_days'] < p['validity_days']:
        module.fail_json(msg='validity_days (%d) must be positive and renew_before_days (%d) between 0 and validity_days'
                         % (p['validity_days'], p['renew_before_days']))

    now = x.utcnow()
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

        index_data = xf.read_file(p['index_path'])
        index = xc.load_index(index_data, ca_cert)
        before_index = xc.dump_index(index) if index_data is not None else None
        recorded = xc.record_issued(index, xc.issued_entries(p['issued']), ca_cert)
        newly = xc.apply_revocations(index, xc.resolve_revocations(index, p['revoke']), now)
        listed = xc.listed_serials(index, now)

        crl_data = xf.read_file(p['crl_path'])
        current = xc.load_crl(crl_data) if crl_data is not None else None
        in_use = bool(index['revoked']) or current is not None or p['publish_empty']
        reasons = []
        crl = current
        if in_use:
            reasons = ['missing'] if current is None else xc.crl_problems(current, ca_cert, listed,
                                                                          p['renew_before_days'], now)
            if reasons:
                # CRL numbers only grow (RFC 5280 5.2.3), also past a CRL the index did not sign
                index['crl_number'] = max(index['crl_number'], (current is not None and xc.crl_number(current)) or 0) + 1
                crl = xc.sign_crl(ca_key, ca_cert, listed, index['crl_number'], p['validity_days'], now)
    except x.X509Error as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())

    after_index = xc.dump_index(index)
    index_mode_wrong = index_data is not None and os.stat(p['index_path']).st_mode & 0o077
    changed = bool(reasons) or after_index != before_index or bool(index_mode_wrong)
    if changed and not module.check_mode:
        for path in (p['index_path'], p['crl_path']):
            if not os.path.isdir(os.path.dirname(path) or '.'):
                module.fail_json(msg='directory of %s does not exist' % path)
        try:
            # the index first: a CRL whose number the index does not know
            # would be signed again under the same number next time
            xf.atomic_write(p['index_path'], after_index, 0o600)
            if reasons:
                xf.atomic_write(p['crl_path'], xc.crl_pem(crl), 0o644)
                os.chmod(p['crl_path'], 0o644)
        except (x.X509Error, OSError) as exc:
            module.fail_json(msg='cannot write %s: %s' % (p['index_path'], exc), exception=traceback.format_exc())

    info = xc.describe_crl(crl) if crl is not None else None
    revoked = [dict(serial=s, name=rec['name'], reason=rec['reason'], revoked_at=rec['revoked_at'], listed=s in listed)
               for s, rec in sorted(index['revoked'].items())]
    result = dict(changed=changed, crl=xc.crl_pem(crl).decode('ascii') if crl is not None else '',
                  renewed=bool(reasons), reasons=reasons, next_update=info['next_update'] if info else '',
                  number=(info['number'] or 0) if info else 0, revoked=revoked, newly_revoked=newly, recorded=recorded)
    if module._diff:
        before_info = xc.describe_crl(current) if current is not None else None
        result['diff'] = dict(before=_crl_text(before_info) if reasons else _crl_text(info),
                              after=_crl_text(info), before_header=p['crl_path'], after_header=p['crl_path'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
