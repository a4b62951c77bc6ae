#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: x509_ca
short_description: Create or reuse the private CA that signs libvirt, VNC, SPICE and migration certificates
version_added: 0.1.0
description:
  - Creates, once, a CA private key and a self-signed X.509 v3 CA certificate
    (basicConstraints CA:TRUE critical with pathlen 0, keyUsage keyCertSign and
    cRLSign critical, subject and authority key identifiers).
  - The key is written only in encrypted form (PKCS#8 with the best cipher the
    C(cryptography) library offers, protected by O(passphrase)). It never
    exists unencrypted on disk and the passphrase is never logged.
  - When both files already exist (created earlier or supplied by the
    operator) they are checked and reused; nothing is rewritten. The key must
    decrypt with O(passphrase) and belong to the certificate, and the
    certificate must be a CA.
  - Run it on the controller (C(delegate_to=localhost), C(run_once=true)).
options:
  cert_path:
    description: CA certificate (PEM).
    type: path
    required: true
  key_path:
    description: CA private key (PEM). Created with mode C(0600); its directory must exist.
    type: path
    required: true
  passphrase:
    description:
      - Passphrase that encrypts the CA key. Keep it in Ansible Vault.
      - An existing unencrypted key is used with a warning, and RV(key_encrypted) is false.
    type: str
    required: true
  create:
    description: Create the CA when the files are missing. With V(false) a missing CA is an error (reuse only).
    type: bool
    default: true
  key_type:
    description: Key type of a new CA. Ignored when the CA already exists.
    type: str
    choices: [ecdsa-p256, ecdsa-p384, rsa-3072, rsa-4096]
    default: ecdsa-p384
  subject:
    description:
      - Subject of a new CA as a mapping, in certificate order (most significant first),
        for example C(O=Example) then C(CN=Example).
      - C(virt-pki-validate) expects the CA's CN to equal the O of the host and client certificates.
    type: dict
    required: true
  validity_days:
    description: Lifetime of a new CA certificate.
    type: int
    default: 3650
  warn_days:
    description: Warn when the CA expires within this many days (renewing a CA is a planned operation, never automatic).
    type: int
    default: 180
  promote:
    description:
      - The last step of a CA rollover. When a CA exists at O(promote.cert_path) / O(promote.key_path) (made
        earlier by this module, its key decrypting with O(passphrase)), it becomes the CA at O(cert_path) /
        O(key_path).
      - The CA it replaces is moved, never deleted, into a new directory under O(promote.archive_dir) named after
        the time and its fingerprint, together with the files of O(promote.with_files) (its CRL and revocation
        index, which belong to it).
      - Once the promoted CA's files are gone (moved), the option does nothing, so the step is idempotent.
    type: dict
    suboptions:
      cert_path:
        description: Certificate of the CA to promote.
        type: path
        required: true
      key_path:
        description: Encrypted key of the CA to promote.
        type: path
        required: true
      archive_dir:
        description: Where the replaced CA is kept. Created with mode C(0700).
        type: path
        required: true
      with_files:
        description: Files of the replaced CA moved into the archive with it, if they exist.
        type: list
        elements: path
        default: []
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.x509
author:
  - secvirt.kvm contributors (@secvirt)
'''

EXAMPLES = r'''
- name: Create the private CA on the controller (once)
  secvirt.kvm.x509_ca:
    cert_path: "{{ playbook_dir }}/pki/cacert.pem"
    key_path: "{{ playbook_dir }}/pki/private/cakey.pem"
    passphrase: "{{ vault_pki_ca_passphrase }}"
    subject:
      O: Example
      CN: Example
  delegate_to: localhost
  run_once: true
  become: false
  no_log: true
'''

RETURN = r'''
created:
  description: Whether the CA was (or in check mode would be) created.
  returned: always
  type: bool
certificate:
  description: CA certificate PEM. Empty in check mode when the CA would be created.
  returned: always
  type: str
subject:
  description: CA subject (RFC 4514).
  returned: when the CA exists
  type: str
  sample: CN=Example,O=Example
not_after:
  description: Expiry of the CA certificate (UTC, ISO 8601).
  returned: when the CA exists
  type: str
fingerprint:
  description: SHA-256 fingerprint of the CA certificate.
  returned: when the CA exists
  type: str
key_type:
  description: Key type of the CA.
  returned: when the CA exists
  type: str
  sample: ecdsa-p384
key_encrypted:
  description: Whether the CA key on disk is encrypted.
  returned: when the CA exists
  type: bool
promoted:
  description: Whether the CA at O(promote.cert_path) was (or in check mode would be) made the CA.
  returned: always
  type: bool
retired:
  description: Directory the replaced CA was moved to (empty when nothing was promoted, and in check mode).
  returned: always
  type: str
retired_files:
  description: Base names of the O(promote.with_files) that were (or would be) moved with the replaced CA.
  returned: always
  type: list
  elements: str
'''

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.secvirt.kvm.plugins.module_utils import x509 as x
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_files as xf


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cert_path=dict(type='path', required=True),
            key_path=dict(type='path', required=True, no_log=False),
            passphrase=dict(type='str', required=True, no_log=True),
            create=dict(type='bool', default=True),
            key_type=dict(type='str', default='ecdsa-p384', choices=list(x.KEY_TYPES)),
            subject=dict(type='dict', required=True),
            validity_days=dict(type='int', default=3650),
            warn_days=dict(type='int', default=180),
            promote=dict(type='dict', options=dict(
                cert_path=dict(type='path', required=True),
                key_path=dict(type='path', required=True, no_log=False),
                archive_dir=dict(type='path', required=True),
                with_files=dict(type='list', elements='path', default=[]),
            )),
        ),
        supports_check_mode=True,
    )
    if not x.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=str(x.CRYPTOGRAPHY_IMPORT_ERROR))
    p = module.params
    if not p['passphrase']:
        module.fail_json(msg='passphrase must not be empty: the CA key is never stored unencrypted')

    result = dict(changed=False, created=False, promoted=False, retired='', retired_files=[])
    if p['promote']:
        promote(module, result)
    cert_path, key_path = p['cert_path'], p['key_path']
    if result['promoted'] and module.check_mode:
        # what a real run would leave at the CA paths
        cert_path, key_path = p['promote']['cert_path'], p['promote']['key_path']

    try:
        cert_data = xf.read_file(cert_path)
        key_data = xf.read_file(key_path)
        if cert_data is None and key_data is None:
            if not p['create']:
                module.fail_json(msg='no CA at %s / %s and create=false' % (p['cert_path'], p['key_path']))
            if p['validity_days'] < 1:
                module.fail_json(msg='validity_days must be positive')
            x.build_name(p['subject'])
            result.update(changed=True, created=True, certificate='')
            if module._diff:
                result['diff'] = dict(before='', after='new %s CA %s\n' % (p['key_type'], p['subject']),
                                      after_header=p['cert_path'])
            if module.check_mode:
                module.exit_json(**result)
            for path in (p['cert_path'], p['key_path']):
                if not os.path.isdir(os.path.dirname(path) or '.'):
                    module.fail_json(msg='directory of %s does not exist' % path)
            key, cert = x.create_ca(p['key_type'], p['subject'], p['validity_days'])
            # key first: a certificate without its key would be reused next run
            xf.atomic_write(p['key_path'], x.private_key_pem(key, p['passphrase']), 0o600)
            xf.atomic_write(p['cert_path'], x.certificate_pem(cert), 0o644)
            os.chmod(p['cert_path'], 0o644)
            encrypted = True
        elif cert_data is None or key_data is None:
            module.fail_json(msg='only one of %s and %s exists; refusing to guess (restore the other or remove both)'
                             % (p['cert_path'], p['key_path']))
        else:
            cert = x.load_certificate(cert_data)
            encrypted = x.is_encrypted_pem(key_data)
            key = x.load_private_key(key_data, p['passphrase'] if encrypted else None)
            problems = x.check_ca(cert, key)
            if problems:
                module.fail_json(msg='%s is not usable as the CA: %s' % (cert_path, '; '.join(problems)))
            if not encrypted:
                module.warn('the CA key %s is not encrypted; re-encrypt it with the passphrase' % p['key_path'])
            mode = os.stat(key_path).st_mode & 0o777
            if mode & 0o077:
                module.warn('the CA key %s has mode %04o; it should be 0600' % (p['key_path'], mode))
    except x.X509Error as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())

    info = x.describe(cert)
    left = x.not_after(cert) - x.utcnow()
    if left.days < p['warn_days']:
        module.warn('the CA certificate expires on %s (in %d days); plan a CA rotation' % (info['not_after'], left.days))
    result.update(certificate=x.certificate_pem(cert).decode('ascii'), subject=info['subject'],
                  not_after=info['not_after'], fingerprint=info['fingerprint'], key_type=info['key_type'],
                  key_encrypted=encrypted)
    module.exit_json(**result)


def promote(module, result):
    """Make the rollover's new CA the CA; move the old one (and its CRL and index) into the archive."""
    p = module.params
    q = p['promote']
    try:
        new_cert_data = xf.read_file(q['cert_path'])
        new_key_data = xf.read_file(q['key_path'])
        if new_cert_data is None and new_key_data is None:
            return
        if new_cert_data is None or new_key_data is None:
            module.fail_json(msg='only one of %s and %s exists; refusing to promote half a CA' % (q['cert_path'], q['key_path']))
        new_cert = x.load_certificate(new_cert_data)
        problems = x.check_ca(new_cert, x.load_private_key(new_key_data, p['passphrase']))
        if problems:
            module.fail_json(msg='%s is not usable as the CA: %s' % (q['cert_path'], '; '.join(problems)))
        old_cert_data = xf.read_file(p['cert_path'])
        if old_cert_data is None or xf.read_file(p['key_path']) is None:
            module.fail_json(msg='no CA at %s / %s to replace; a rollover starts from an existing CA' % (p['cert_path'], p['key_path']))
    except x.X509Error as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    old_info = x.describe(x.load_certificate(old_cert_data))
    extra = [f for f in q['with_files'] if os.path.lexists(f)]
    result.update(changed=True, promoted=True, retired_files=[os.path.basename(f) for f in extra])
    if module._diff:
        result['diff'] = dict(before='CA %s SHA-256 %s\n' % (old_info['subject'], old_info['fingerprint']),
                              after='CA %s SHA-256 %s\n' % (x.describe(new_cert)['subject'], x.describe(new_cert)['fingerprint']),
                              after_header=p['cert_path'])
    if module.check_mode:
        return
    archive = os.path.join(q['archive_dir'], '%s-%s' % (x.utcnow().strftime('%Y%m%dT%H%M%SZ'),
                                                        old_info['fingerprint'].replace(':', '')[:16]))
    if not os.path.isdir(q['archive_dir']):
        os.makedirs(q['archive_dir'], 0o700)
    os.mkdir(archive, 0o700)
    moves = [(p['cert_path'], 'cacert.pem'), (p['key_path'], 'cakey.pem')]
    moves += [(f, os.path.basename(f)) for f in extra]
    # the old CA out first, then the new one in: a failure in between leaves
    # no CA at the paths (the next run refuses), never a half of each
    for path, name in moves:
        os.rename(path, os.path.join(archive, name))
    os.rename(q['key_path'], p['key_path'])
    os.rename(q['cert_path'], p['cert_path'])
    result['retired'] = archive


if __name__ == '__main__':
    main()
