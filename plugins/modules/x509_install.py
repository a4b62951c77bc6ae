#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: x509_install
short_description: Install a CA certificate and signed certificates on a host, after checking them against the host's keys
version_added: 0.1.0
description:
  - Writes the CA certificate to every path of O(ca_files), the CRL (if any) to every path of O(crl_files), and each
    certificate to every path of its O(certificates[].files), with the given
    owner, group and mode, in one call.
  - Before anything is written, every certificate is checked - signed by
    O(ca_certificate), currently valid, matching the private key already on
    the host at O(certificates[].key_path), its subjectAltName holding every
    name of O(certificates[].names), its extended key usages fitting
    O(certificates[].profile). One failed check fails the call and nothing
    is written, so a host never ends up with a certificate its key or its
    clients reject.
  - Files are replaced atomically (temporary file in the same directory,
    then rename) and only when their content differs.
  - The module runs as root on paths inside users' home directories, so it
    refuses (for the whole call, before writing anything) any file or
    O(certificates[].key_path) whose path goes through a symlink owned by
    another user than root, or that is itself a symlink. Files are opened
    without following links and owner and mode are set through the open file.
options:
  ca_certificate:
    description:
      - CA certificate (PEM), or a bundle of CA certificates (during a CA rollover, the old and the new CA).
      - Each certificate of O(certificates) is checked against the CA of the bundle that signed it.
    type: str
    required: true
  ca_files:
    description: Where the CA certificate goes.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: File path; its directory must exist.
        type: path
        required: true
      owner:
        description: File owner.
        type: str
        default: root
      group:
        description: File group.
        type: str
        default: root
      mode:
        description: File mode.
        type: str
        default: '0644'
  crl:
    description:
      - Certificate revocation list (PEM) from M(secvirt.kvm.x509_crl), written to every path of O(crl_files).
      - It must be signed by a CA of O(ca_certificate) and not be past its nextUpdate (an expired CRL makes
        every TLS peer refuse every certificate); otherwise nothing is written.
      - Empty (the default) leaves any CRL file alone.
    type: str
    default: ''
  crl_files:
    description: Where the CRL goes (libvirt reads C(cacrl.pem) next to C(cacert.pem), QEMU C(ca-crl.pem) in its x509 directories).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: File path; its directory must exist.
        type: path
        required: true
      owner:
        description: File owner.
        type: str
        default: root
      group:
        description: File group.
        type: str
        default: root
      mode:
        description: File mode.
        type: str
        default: '0644'
  certificates:
    description: Signed certificates to install.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Label used in messages.
        type: str
        required: true
      certificate:
        description: The certificate (PEM).
        type: str
        required: true
      key_path:
        description: Private key on the host that the certificate must belong to.
        type: path
      names:
        description: Names (DNS or IP) clients will connect to; each must be in the subjectAltName.
        type: list
        elements: str
        default: []
      profile:
        description: Expected usage; V(server) needs serverAuth and clientAuth, V(client) needs clientAuth.
        type: str
        choices: [server, client]
      files:
        description: Where the certificate goes.
        type: list
        elements: dict
        required: true
        suboptions:
          path:
            description: File path; its directory must exist.
            type: path
            required: true
          owner:
            description: File owner.
            type: str
            default: root
          group:
            description: File group.
            type: str
            default: root
          mode:
            description: File mode.
            type: str
            default: '0644'
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.x509
author:
  - secvirt.kvm contributors (@secvirt)
'''

EXAMPLES = r'''
- name: Install the CA and the libvirt server certificate
  secvirt.kvm.x509_install:
    ca_certificate: "{{ ca.certificate }}"
    ca_files:
      - path: /etc/pki/CA/cacert.pem
    certificates:
      - name: server
        certificate: "{{ signed.certificates[inventory_hostname + '/server'].certificate }}"
        key_path: /etc/pki/libvirt/private/serverkey.pem
        names: ["{{ ansible_facts['fqdn'] }}"]
        profile: server
        files:
          - path: /etc/pki/libvirt/servercert.pem
'''

RETURN = r'''
changed_files:
  description: Files whose content or attributes were (or would be) changed.
  returned: always
  type: list
  elements: str
  sample: [/etc/pki/libvirt/servercert.pem]
'''

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.secvirt.kvm.plugins.module_utils import x509 as x
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_crl as xc
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_files as xf

FILE_SPEC = dict(
    path=dict(type='path', required=True),
    owner=dict(type='str', default='root'),
    group=dict(type='str', default='root'),
    mode=dict(type='str', default='0644'),
)


def check(module):
    """(ca PEM bytes, [(pem bytes, files)]) after verifying everything; fails the module otherwise."""
    p = module.params
    errors = []
    try:
        cas = xc.load_ca_bundle(p['ca_certificate'])
        for ca in cas:
            errors.extend('CA %s: %s' % (x.name_to_string(ca.subject), e) for e in x.check_ca(ca))
    except x.X509Error as exc:
        module.fail_json(msg='nothing written; CA: %s' % exc)
    plan = [(b''.join(x.certificate_pem(ca) for ca in cas), p['ca_files'], 'certificate')]
    if p['crl']:
        try:
            crl = xc.check_crl_for_install(p['crl'], cas)
            plan.append((xc.crl_pem(crl), p['crl_files'], 'crl'))
        except x.X509Error as exc:
            errors.append('CRL: %s' % exc)
    for item in p['certificates']:
        try:
            cert = x.load_certificate(item['certificate'])
            key = None
            if item['key_path']:
                data = xf.read_file(item['key_path'])
                if data is None and not module.check_mode:
                    raise x.X509Error('private key %s does not exist' % item['key_path'])
                if data is not None:
                    key = x.load_private_key(data)
            # against the CA of the bundle that issued it (during a CA rollover
            # the bundle holds the old and the new CA)
            issuer = next((ca for ca in cas if x.signed_by(cert, ca)), cas[0])
            problems = x.verify_certificate(cert, issuer, private_key=key, names=item['names'], profile=item['profile'])
            if module.check_mode and key is not None and problems == ['the private key does not belong to the certificate']:
                # check mode signs for a key that x509_csr only simulated
                module.warn('%s: certificate is for a key that a real run would create' % item['name'])
                problems = []
            errors.extend('%s: %s' % (item['name'], e) for e in problems)
            plan.append((x.certificate_pem(cert), item['files'], 'certificate'))
        except x.X509Error as exc:
            errors.append('%s: %s' % (item['name'], exc))
    for _pem, files, _kind in plan:
        for f in files:
            try:
                xf.parse_mode(f['mode'], f['path'], secret=False)
                xf.resolve_owner(f['owner'], f['group'])
                # no symlink a user could plant, anywhere on the path (see x509_files.check_path)
                xf.check_path(f['path'], missing_ok=module.check_mode)
            except x.X509Error as exc:
                errors.append(str(exc))
    if errors:
        module.fail_json(msg='nothing written; ' + '; '.join(errors))
    return plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ca_certificate=dict(type='str', required=True),
            ca_files=dict(type='list', elements='dict', default=[], options=FILE_SPEC),
            certificates=dict(type='list', elements='dict', default=[], options=dict(
                name=dict(type='str', required=True),
                certificate=dict(type='str', required=True),
                key_path=dict(type='path', no_log=False),
                names=dict(type='list', elements='str', default=[]),
                profile=dict(type='str', choices=list(x.PROFILES)),
                files=dict(type='list', elements='dict', required=True, options=FILE_SPEC),
            )),
            crl=dict(type='str', default=''),
            crl_files=dict(type='list', elements='dict', default=[], options=FILE_SPEC),
        ),
        supports_check_mode=True,
    )
    if not x.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=str(x.CRYPTOGRAPHY_IMPORT_ERROR))
    plan = check(module)

    changed_files = []
    before, after = [], []
    try:
        for pem, files, kind in plan:
            for f in files:
                current = xf.read_file(f['path'])
                changed = current != pem
                if changed:
                    before.append(xf.file_summary(f['path'], current, kind))
                    if not module.check_mode:
                        xf.atomic_write(f['path'], pem, xf.parse_mode(f['mode'], secret=False))
                # through the file's descriptor, never a link; check mode only reports
                uid, gid = xf.resolve_owner(f['owner'], f['group'])
                attrs_changed = xf.set_attributes(f['path'], uid, gid, xf.parse_mode(f['mode'], secret=False),
                                                  module.check_mode)
                if attrs_changed and not changed:
                    before.append('%s: other owner, group or mode\n' % f['path'])
                changed = changed or attrs_changed
                if changed:
                    changed_files.append(f['path'])
                    after.append(xf.file_summary(f['path'], pem, kind, with_attrs=False).rstrip('\n')
                                 + ' (owner %s:%s mode %s)\n' % (f['owner'], f['group'], f['mode']))
    except (x.X509Error, OSError) as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc(), changed_files=changed_files,
                         changed=bool(changed_files))

    result = dict(changed=bool(changed_files), changed_files=changed_files)
    if module._diff:
        result['diff'] = dict(before=''.join(before), after=''.join(after))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
