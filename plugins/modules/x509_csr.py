#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: x509_csr
short_description: Generate private keys in place on a host and return certificate signing requests
version_added: 0.1.0
description:
  - For each entry of O(keys), makes sure a private key exists at O(keys[].path)
    (created on the host if missing, unreadable, of another type than
    O(keys[].type), or when O(keys[].regenerate=true)), enforces its owner and
    mode, keeps identical copies at O(keys[].copies) (for programs that want
    the key under another name or with another owner, such as QEMU's VNC,
    SPICE and migration directories), and returns a PKCS#10 CSR signed with it.
  - The private key never leaves the host and is never returned; only the CSR
    and the public-key fingerprint are. Keys are written through a temporary
    file that is C(0600) or stricter, then renamed into place.
  - The CSR is rebuilt on every run (it is not stored), so a CSR alone never
    reports a change; only a new key or corrected file attributes do.
  - All entries are validated before anything is written.
  - The module runs as root on paths inside users' home directories, so it
    refuses (for the whole call, before writing anything) any key, copy or
    O(keys[].cert_path) whose path goes through a symlink owned by another
    user than root, or that is itself a symlink. Files are opened without
    following links and owner and mode are set through the open file.
  - In check mode a missing key is simulated with a throw-away in-memory key,
    so that the signer can report what it would issue.
options:
  keys:
    description: Keys to maintain, one CSR each.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Identifier of the entry; keys of RV(requests).
        type: str
        required: true
      path:
        description: Private key file (PEM, PKCS#8, unencrypted because daemons read it unattended). Its directory must exist.
        type: path
        required: true
      type:
        description: Key type.
        type: str
        choices: [ecdsa-p256, ecdsa-p384, rsa-3072, rsa-4096]
        default: ecdsa-p256
      owner:
        description: Owner of the key file.
        type: str
        default: root
      group:
        description: Group of the key file.
        type: str
        default: root
      mode:
        description: Mode of the key file. Anything readable or writable by others is refused.
        type: str
        default: '0600'
      copies:
        description: Further files that must hold the same key.
        type: list
        elements: dict
        default: []
        suboptions:
          path:
            description: Path of the copy; its directory must exist.
            type: path
            required: true
          owner:
            description: Owner of the copy.
            type: str
            default: root
          group:
            description: Group of the copy.
            type: str
            default: root
          mode:
            description: Mode of the copy (never readable by others).
            type: str
            default: '0600'
      subject:
        description: Subject requested in the CSR (mapping in certificate order). The signer decides the final subject.
        type: dict
        required: true
      dns:
        description: DNS names requested in the CSR's subjectAltName.
        type: list
        elements: str
        default: []
      ip:
        description: IP addresses requested in the CSR's subjectAltName.
        type: list
        elements: str
        default: []
      cert_path:
        description: Certificate currently installed for this key; returned as RV(requests.current_certificate) so the signer can decide about renewal.
        type: path
      regenerate:
        description: Replace the key even if it is fine (key rotation). Not idempotent.
        type: bool
        default: false
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.x509
author:
  - secvirt.kvm contributors (@secvirt)
'''

EXAMPLES = r'''
- name: Create the libvirt server key on the host and request a certificate
  secvirt.kvm.x509_csr:
    keys:
      - name: server
        path: /etc/pki/libvirt/private/serverkey.pem
        mode: "0600"
        subject:
          O: Example
          CN: "{{ ansible_facts['fqdn'] }}"
        dns: ["{{ ansible_facts['fqdn'] }}"]
        cert_path: /etc/pki/libvirt/servercert.pem
      - name: qemu
        path: /etc/pki/libvirt-vnc/server-key.pem
        group: libvirt-qemu
        mode: "0440"
        copies:
          - path: /etc/pki/libvirt-spice/server-key.pem
            group: libvirt-qemu
            mode: "0440"
        subject:
          O: Example
          CN: "{{ ansible_facts['fqdn'] }}"
        dns: ["{{ ansible_facts['fqdn'] }}"]
  register: host_csrs
'''

RETURN = r'''
requests:
  description: Per entry name, the CSR and facts about the key (never the key).
  returned: always
  type: dict
  contains:
    csr:
      description: PEM certificate signing request.
      type: str
    public_key_fingerprint:
      description: SHA-256 of the public key (SubjectPublicKeyInfo), as C(aa:bb:...).
      type: str
    key_type:
      description: Type of the key.
      type: str
      sample: ecdsa-p256
    key_created:
      description: Whether a new key was (or would be) generated.
      type: bool
    key_reason:
      description: Why a new key was generated (C(missing), C(unreadable), C(type), C(regenerate)), or empty.
      type: str
    current_certificate:
      description: Contents of O(keys[].cert_path), or empty when unset or missing.
      type: str
  sample:
    server:
      csr: "-----BEGIN CERTIFICATE REQUEST-----..."
      public_key_fingerprint: "3f:a1:..."
      key_type: ecdsa-p256
      key_created: false
      key_reason: ""
      current_certificate: "-----BEGIN CERTIFICATE-----..."
'''

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.secvirt.kvm.plugins.module_utils import x509 as x
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_files as xf

COPY_SPEC = dict(
    path=dict(type='path', required=True),
    owner=dict(type='str', default='root'),
    group=dict(type='str', default='root'),
    mode=dict(type='str', default='0600'),
)


def validate(entries, check_mode=False):
    """Every problem of every entry, before the first write.

    Every path (keys, copies, the current certificate) must be safe to use as
    root: no component a symlink a user could have planted, the file itself
    not a symlink at all (see x509_files.check_path). A missing directory is fine in
    check mode: the play's preceding (also simulated) task would have created it.
    """
    errors = []
    names = set()
    for entry in entries:
        where = entry['name']
        try:
            if where in names:
                raise x.X509Error('duplicate name')
            names.add(where)
            for target in [entry] + entry['copies']:
                xf.parse_mode(target['mode'], target['path'])
                xf.resolve_owner(target['owner'], target['group'])
                xf.check_path(target['path'], missing_ok=check_mode)
            if entry['cert_path']:
                xf.check_path(entry['cert_path'], missing_ok=True)
            x.build_name(entry['subject'])
            x.normalize_sans(entry['dns'], entry['ip'])
        except x.X509Error as exc:
            errors.append('%s: %s' % (where, exc))
    return errors


def main():
    module = AnsibleModule(
        argument_spec=dict(
            keys=dict(type='list', elements='dict', required=True, no_log=False, options=dict(
                name=dict(type='str', required=True),
                path=dict(type='path', required=True),
                type=dict(type='str', default='ecdsa-p256', choices=list(x.KEY_TYPES)),
                owner=dict(type='str', default='root'),
                group=dict(type='str', default='root'),
                mode=dict(type='str', default='0600'),
                copies=dict(type='list', elements='dict', default=[], options=COPY_SPEC),
                subject=dict(type='dict', required=True),
                dns=dict(type='list', elements='str', default=[]),
                ip=dict(type='list', elements='str', default=[]),
                cert_path=dict(type='path'),
                regenerate=dict(type='bool', default=False),
            )),
        ),
        supports_check_mode=True,
    )
    if not x.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=str(x.CRYPTOGRAPHY_IMPORT_ERROR))
    errors = validate(module.params['keys'], module.check_mode)
    if errors:
        module.fail_json(msg='nothing written; ' + '; '.join(errors))

    changed = False
    requests = {}
    before, after = [], []
    try:
        for entry in module.params['keys']:
            key, reason, data = xf.plan_key(entry['path'], entry['type'], entry['regenerate'])
            pem = data
            if key is None:
                key = x.generate_private_key(entry['type'])
                pem = x.private_key_pem(key)
            for target in [entry] + entry['copies']:
                current = data if target is entry else xf.read_file(target['path'])
                before.append(xf.file_summary(target['path'], current))
                if current != pem:
                    changed = True
                    if not module.check_mode:
                        xf.atomic_write(target['path'], pem, xf.parse_mode(target['mode']))
                # through the file's descriptor, never a link; in check mode this only
                # reports whether owner/group/mode would change
                uid, gid = xf.resolve_owner(target['owner'], target['group'])
                if xf.set_attributes(target['path'], uid, gid, xf.parse_mode(target['mode']), module.check_mode):
                    changed = True
                if module.check_mode:
                    after.append('%s: %s key %s mode %s owner %s:%s\n' % (
                        target['path'], entry['type'], x.public_key_fingerprint(key)[:23],
                        target['mode'], target['owner'], target['group']))
                else:
                    after.append(xf.file_summary(target['path'], pem))
            current_cert = ''
            if entry['cert_path']:
                current_cert = (xf.read_file(entry['cert_path']) or b'').decode('ascii', 'replace')
            requests[entry['name']] = dict(
                csr=x.csr_pem(x.build_csr(key, entry['subject'], entry['dns'], entry['ip'])).decode('ascii'),
                public_key_fingerprint=x.public_key_fingerprint(key),
                key_type=x.key_type_of(key),
                key_created=bool(reason),
                key_reason=reason,
                current_certificate=current_cert,
            )
    except (x.X509Error, OSError) as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc(), changed=changed)

    result = dict(changed=changed, requests=requests)
    if module._diff:
        result['diff'] = dict(before=''.join(before), after=''.join(after))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
