#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: libvirt_config
short_description: Set many keys of a libvirt-style configuration file in one call
version_added: 0.1.0
description:
  - Edits files that use libvirt's configuration syntax, such as C(libvirtd.conf),
    C(virtproxyd.conf), C(virtqemud.conf), C(qemu.conf) and C(libvirt.conf),
    with lines like C(key = "string"), C(key = 1) or C(key = ["a", "b"]).
  - Only the named keys change. Comments, ordering and every other setting keep
    their exact text, so several roles can share one file.
  - A changed key is rewritten where it stands; a new key goes right after its
    commented-out example (C(#key = ...)) when the file has one, else at the end.
    Later duplicates of a key, which libvirt ignores, are removed.
  - The current file and the result are both parsed before anything is written;
    a file the daemon would reject is never written. Values are compared after
    parsing, so C(auth_tls='none') and C(auth_tls = "none") are the same.
  - The file is replaced atomically, keeping its owner, group and mode.
  - Values of keys that hold secrets (names matching C(*_password), C(*_secret) or C(*passwd*),
    any case, such as C(vnc_password)) are written to the file as given but shown as C(********)
    in the diff, in RV(values) and in the module's logged arguments. Changes are still detected
    on the real values, and the diff still marks a secret that changed.
options:
  path:
    description: Configuration file to edit.
    type: path
    required: true
  settings:
    description:
      - Keys to set. Booleans become C(1)/C(0), integers stay integers,
        strings are quoted, lists become libvirt lists.
    type: dict
    default: {}
  unset:
    description:
      - Keys to remove, so the daemon falls back to its built-in default.
    type: list
    elements: str
    default: []
  key_types:
    description:
      - Check the type of the values in O(settings) before editing.
      - V(daemon) checks the keys documented for C(libvirtd.conf)/C(virtproxyd.conf)
        (for example C(listen_tls) must be an integer, C(tls_allowed_dn_list) a list).
    type: str
    choices: [none, daemon]
    default: none
  create:
    description:
      - Create the file when it does not exist. Otherwise a missing file is an
        error (the package that owns it is probably not installed).
    type: bool
    default: false
  mode:
    description: Mode of a file created by O(create).
    type: raw
    default: '0644'
  backup:
    description:
      - Keep a timestamped copy of the previous file next to it when it changes.
    type: bool
    default: true
extends_documentation_fragment:
  - secvirt.kvm.attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change without changing anything.
  diff_mode:
    support: full
    details: Shows the file before and after (its keys, with the values of secret-looking keys hidden).
notes:
  - Only one setting per line is supported (libvirt also accepts C(;) separators;
    such a file is refused rather than guessed at).
author:
  - secvirt.kvm contributors (@secvirt)
'''

EXAMPLES = r'''
- name: Require client certificates from the allowed DNs on the TLS socket
  secvirt.kvm.libvirt_config:
    path: /etc/libvirt/libvirtd.conf
    key_types: daemon
    settings:
      auth_tls: none
      tls_no_verify_certificate: 0
      tls_allowed_dn_list:
        - "C=DE,O=Example,OU=virt,CN=station1.example.org"
      keepalive_interval: 5
    unset:
      - listen_addr
  register: libvirtd_conf
  notify: Restart libvirt daemon
'''

RETURN = r'''
backup_file:
  description: Copy of the previous file, when O(backup=true) and the file changed.
  returned: changed and backup
  type: str
  sample: /etc/libvirt/libvirtd.conf.12345.2026-11-23@10:00:00~
changed_keys:
  description: Keys whose effective value changed (or were removed).
  returned: always
  type: list
  elements: str
  sample: [auth_tls, tls_allowed_dn_list]
values:
  description:
    - Effective values of the keys named in O(settings) after the edit.
    - Values of secret keys (C(*_password), C(*_secret), C(*passwd*)) are shown as C(********).
  returned: always
  type: dict
  sample: {auth_tls: none, tls_no_verify_certificate: 0}
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_conf
from ansible_collections.secvirt.kvm.plugins.module_utils.file_write import enforce_attributes, replace_file


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            settings=dict(type='dict', default={}),
            unset=dict(type='list', elements='str', default=[]),
            key_types=dict(type='str', choices=['none', 'daemon'], default='none'),
            create=dict(type='bool', default=False),
            mode=dict(type='raw', default='0644'),
            backup=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    path = module.params['path']
    settings = module.params['settings']
    unset = module.params['unset']
    # values of secret keys never leave the module: not in the logged and
    # returned arguments (no_log_values), the diff or the returned values
    for key, value in settings.items():
        if libvirt_conf.is_secret_key(key):
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if item is not None and to_text(item) != '':
                    module.no_log_values.add(to_text(item))
    exists = os.path.exists(path)
    if not exists and not module.params['create']:
        module.fail_json(msg='%s does not exist (is the package that owns it installed?); use create=true to create it' % path)
    before = ''
    if exists:
        with open(path, 'rb') as handle:
            before = to_text(handle.read(), errors='surrogate_or_strict')

    try:
        normalised = dict((k, libvirt_conf.normalize_value(k, v)) for k, v in settings.items())
        if module.params['key_types'] == 'daemon':
            libvirt_conf.check_types(normalised, libvirt_conf.DAEMON_KEY_TYPES)
        old_values = libvirt_conf.values(before)
    except libvirt_conf.ConfError as exc:
        module.fail_json(msg='%s: %s' % (path, to_native(exc)))
    try:
        after = libvirt_conf.edit(before, normalised, unset)
    except libvirt_conf.ConfError as exc:
        module.fail_json(msg='%s: %s' % (path, to_native(exc)))

    changed_keys = [k for k in normalised if old_values.get(k) != normalised[k]]
    changed_keys += [k for k in unset if k in old_values]
    changed = after != before or not exists
    result = dict(changed=changed, changed_keys=changed_keys,
                  values=dict((k, libvirt_conf.mask_value(k, normalised[k])) for k in normalised))
    if module._diff:
        result['diff'] = dict(before=libvirt_conf.mask_text(before),
                              after=libvirt_conf.mask_text(after, changed=changed_keys),
                              before_header=path if exists else '/dev/null', after_header=path)

    if changed and not module.check_mode:
        # an existing file keeps its owner and mode (atomic_move); a new one gets O(mode)
        backup_file = replace_file(module, path, after, backup=exists and module.params['backup'])
        if backup_file:
            result['backup_file'] = backup_file
        if not exists:
            enforce_attributes(module, path, False, mode=module.params['mode'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
