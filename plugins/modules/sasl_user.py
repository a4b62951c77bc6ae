#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: sasl_user
short_description: Manage the users of libvirt's SASL database (sasldb) in one call
version_added: 0.1.0
description:
  - Creates, updates and removes users of a Cyrus SASL sasldb (by default
    libvirt's C(/etc/libvirt/passwd.db)) with C(saslpasswd2).
  - Passwords go to C(saslpasswd2 -p) on stdin, never on the command line, and
    C(-n) keeps the cleartext C(userPassword) property out of the database;
    only the salted mechanism secrets (for example SCRAM-SHA-256) are stored.
    Users found with a cleartext C(userPassword) property are re-created without it.
  - Set C(mech_list) in C(/etc/sasl2/<appname>.conf) B(before) adding users,
    because C(saslpasswd2) computes the secrets of the mechanisms listed there.
    Cyrus SASL computes the SCRAM verifier (the C(authPassword) property) only
    when that file also sets C(scram_secret_generate) to C(yes);
    the C(secvirt.kvm.libvirt_remote) role writes both.
  - Password changes follow O(update_password). The default V(on_mismatch) checks
    the password against the stored SCRAM verifier (salt, iteration count,
    StoredKey and ServerKey of C(authPassword)) and, with O(store_plaintext=true),
    against the cleartext C(userPassword), in constant time; the cleartext
    password is never written, printed or put on a command line for that.
options:
  users:
    description: Users to manage.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: SASL user name (without realm).
        type: str
        required: true
      password:
        description: Password; required when O(users[].state=present).
        type: str
      state:
        description: Whether the user exists.
        type: str
        choices: [present, absent]
        default: present
  exclusive:
    description:
      - Remove every entry of the database that is not one of O(users) in O(realm),
        including entries in other realms (a client can log in as C(user@realm)
        with any realm the database holds).
    type: bool
    default: false
  update_password:
    description:
      - V(on_mismatch) sets the password when the user is created and whenever
        the stored verifier does not match it (a rotated password in the
        inventory), and reports no change when it matches. It reads the
        database file directly (Berkeley DB, the format of Debian's Cyrus SASL);
        when the file is in another format, or the user has no verifier it
        understands, the password is left alone with a warning (see RV(unverified)).
      - V(on_create) sets the password only when the user is created; a changed
        password is then ignored.
      - V(always) sets it on every run and always reports a change.
      - C(saslpasswd2) drops one trailing newline of the password; the check does
        the same. Passwords with a NUL character or longer than 1024 bytes are refused.
    type: str
    choices: [on_mismatch, on_create, always]
    default: on_mismatch
  path:
    description: The sasldb file.
    type: path
    default: /etc/libvirt/passwd.db
  appname:
    description: SASL application name (C(-a)); libvirt requires C(libvirt).
    type: str
    default: libvirt
  realm:
    description:
      - SASL realm (C(-u)) of the managed users.
      - Unset means the realm libvirtd looks users up in, the host's canonical
        name (C(getaddrinfo) with C(AI_CANONNAME) on the host name, usually the
        FQDN). C(saslpasswd2)'s own default, the short host name, is not used,
        because libvirtd would not find users stored there.
    type: str
  store_plaintext:
    description:
      - Also store the cleartext C(userPassword) property (C(saslpasswd2) without C(-n)).
      - Not needed for SCRAM when C(scram_secret_generate) is on (SCRAM then
        authenticates from its salted C(authPassword) verifier). When the
        configured mechanisms store no verifier of their own, users get no
        credential at all and the module fails rather than leave an account that
        cannot log in. V(true) keeps the password in cleartext in the database
        file (mode O(mode), root only).
    type: bool
    default: false
  mode:
    description: Mode enforced on the database file (it holds password verifiers).
    type: str
    default: '0600'
extends_documentation_fragment:
  - secvirt.kvm.attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change without changing anything.
  diff_mode:
    support: full
    details: Shows the list of users before and after, never a password or a verifier.
requirements:
  - C(saslpasswd2) and C(sasldblistusers2) (Debian package C(sasl2-bin)) on the managed host
author:
  - secvirt.kvm contributors (@secvirt)
'''

EXAMPLES = r'''
- name: Allow exactly these SASL users to manage libvirt
  secvirt.kvm.sasl_user:
    users:
      - name: admin
        password: "{{ vault_libvirt_admin_password }}"
      - name: olduser
        state: absent
    exclusive: true
  no_log: true
'''

RETURN = r'''
users:
  description: Users (C(user@realm)) in the database after the run.
  returned: always
  type: list
  elements: str
  sample: [admin@kvmhost.example.org]
realm:
  description: The realm the users were managed in.
  returned: always
  type: str
  sample: kvmhost.example.org
actions:
  description:
    - What was (or in check mode would be) done, without passwords.
    - C(update) is a password change (O(update_password=always), or a password
      that does not match the stored verifier).
  returned: always
  type: list
  elements: str
  sample: ["create admin", "update operator@kvmhost.example.org", "delete olduser@kvmhost.example.org"]
unverified:
  description:
    - Users (C(user@realm)) whose password could not be compared with the database
      under O(update_password=on_mismatch) and was therefore left as it is.
  returned: always
  type: list
  elements: str
  sample: []
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.secvirt.kvm.plugins.module_utils import sasl


def main():
    module = AnsibleModule(
        argument_spec=dict(
            users=dict(type='list', elements='dict', default=[], options=dict(
                name=dict(type='str', required=True),
                password=dict(type='str', no_log=True),
                state=dict(type='str', choices=['present', 'absent'], default='present'),
            )),
            exclusive=dict(type='bool', default=False),
            update_password=dict(type='str', choices=['on_mismatch', 'on_create', 'always'], default='on_mismatch',
                                 no_log=False),
            path=dict(type='path', default='/etc/libvirt/passwd.db'),
            appname=dict(type='str', default='libvirt'),
            realm=dict(type='str'),
            mode=dict(type='str', default='0600'),
            store_plaintext=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    saslpasswd = module.get_bin_path('saslpasswd2', required=True)
    listusers = module.get_bin_path('sasldblistusers2', required=True)

    def run(argv, data=None):
        # binary_data: no newline appended, so it cannot become part of the password
        return module.run_command(argv, data=data, binary_data=True)

    if not p['realm']:
        p['realm'] = sasl.server_realm()
    db = sasl.SaslDb(run, p['path'], appname=p['appname'], realm=p['realm'],
                     saslpasswd=saslpasswd, listusers=listusers, exists=os.path.exists(p['path']),
                     store_plaintext=p['store_plaintext'])
    unverified = []

    def check(name, realm, password):
        verdict = db.check_password(name, realm, password)
        if verdict is None:
            unverified.append('%s@%s' % (name, realm))
        return verdict

    try:
        current = db.list()
        actions = sasl.plan(current, p['users'], p['exclusive'], p['update_password'], p['realm'],
                            p['store_plaintext'], check=check)
    except sasl.SaslError as exc:
        module.fail_json(msg=str(exc))
    if unverified:
        module.warn('could not compare the password of %s with %s (no SCRAM verifier or cleartext this module can '
                    'read there); it was left unchanged: set update_password=always once to apply a changed password'
                    % (', '.join(unverified), p['path']))

    def label(action):
        return '%s %s' % (action[0], action[1] if action[2] is None else '%s@%s' % (action[1], action[2]))

    before = sorted('%s@%s' % k for k in current)
    result = dict(changed=bool(actions), actions=[label(a) for a in actions], users=before, realm=p['realm'],
                  unverified=unverified)
    if actions and not module.check_mode:
        try:
            sasl.apply(db, actions, p['users'])
            db.exists = True
            after = db.list()
            result['users'] = sorted('%s@%s' % k for k in after)
        except sasl.SaslError as exc:
            module.fail_json(msg=str(exc), **result)
        lost = sasl.missing_secrets(after, actions, p['realm'])
        if lost:
            module.fail_json(msg='saslpasswd2 stored no credential for %s: the mechanisms in /etc/sasl2/%s.conf '
                                 'stored no verifier (for SCRAM, set "scram_secret_generate: yes" there), '
                                 'or accept store_plaintext=true.'
                                 % (', '.join(lost), p['appname']), **result)
    if os.path.exists(p['path']) and not module.check_mode:
        file_args = module.load_file_common_arguments(dict(path=p['path'], mode=p['mode'], owner='root'))
        result['changed'] = module.set_file_attributes_if_different(file_args, result['changed'])
    if module._diff:
        after = result['users'] if not module.check_mode else sorted(
            set(before) - set(label(a)[7:] for a in actions if a[0] == 'delete')
            | set(a[1] for a in actions if a[0] == 'create'))
        result['diff'] = dict(before='\n'.join(before) + '\n', after='\n'.join(after) + '\n',
                              before_header=p['path'], after_header=p['path'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
