#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: audit_rules
short_description: Write virtualization audit rules generated from rule groups
version_added: 0.1.0
description:
  - Renders groups of audit rules (the seed guide's C(virt_*) rule set, or your own)
    into one file under C(/etc/audit/rules.d/) in today's C(auditctl) syntax
    (C(-a always,exit -F path=... -F perm=...), C(-F arch=b64 -S ...)).
  - Subjects are named by class (C(qemu), C(libvirt_daemons), ...). With SELinux enabled a
    class becomes C(subj_type=) filters as in the seed; without SELinux (AppArmor or none)
    it becomes the account the processes run as (C(-F uid=libvirt-qemu)) or one
    C(-a never,exit ... -F exe=) exclusion per executable in front of the rule, so the
    same events are caught. Rules that only exist for SELinux (C(obj_type=virt_image_t),
    the C(qemu_t) cross-domain catch-all) are replaced by their C(fallback) rules.
  - A rule whose directory does not exist, whose account does not exist or whose subject
    has no equivalent on the host is left out and reported in RV(skipped) (and as a comment
    in the file), because C(auditctl -R) stops at the first rule it cannot load.
  - Does not load the rules. Run C(augenrules --load) afterwards; O(compare_loaded) then tells
    whether the kernel runs exactly the rules of the file (C(auditctl -l)).
options:
  dest:
    description: Rules file to write, normally C(/etc/audit/rules.d/<name>.rules).
    type: path
    required: true
  groups:
    description:
      - Rule groups in the order they are written (the kernel uses the first matching
        exit rule, so exclusions go first and catch-alls last).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Group name (lower case, digits, C(_)).
        type: str
        required: true
      key:
        description: Audit key of the group's C(always) rules; must start with O(key_prefix).
        type: str
      description:
        description: Written as a comment above the group.
        type: str
      enabled:
        description: Whether the group is written.
        type: bool
        default: true
      rules:
        description:
          - Rules, each a dict with C(path) or C(dir) (a string or a list; one rule per path),
            or C(syscalls) (one rule per O(arches) entry), or C(obj_type) (SELinux only);
            optional C(perm) (C(rwxa) letters), C(by) or C(not_by) (a subject class of O(subjects)),
            C(action) (C(always) default, or C(never)), C(obj_type_not), C(selinux_only) and
            C(fallback) (rules used instead when SELinux is not enabled).
        type: list
        elements: dict
        required: true
  switches:
    description:
      - Switch groups on (V(true)) or off (V(false)) by name, overriding their C(enabled).
        Naming a group that is not in O(groups) is an error.
    type: dict
    default: {}
  subjects:
    description:
      - Subject classes referred to by C(by)/C(not_by). Each is a dict with C(selinux_types)
        (list), C(user) (the account its processes run as) and/or C(exes) (executables).
        Without SELinux, C(user) is preferred over C(exes).
    type: dict
    default: {}
  selinux:
    description:
      - Whether SELinux is enabled. V(auto) looks at C(/sys/fs/selinux/enforce).
    type: str
    choices: [auto, enabled, disabled]
    default: auto
  arches:
    description: Architectures of syscall rules (C(-F arch=)).
    type: list
    elements: str
    choices: [b64, b32]
    default: [b64, b32]
  key_prefix:
    description: Every group key must start with this (the seed's C(virt_)).
    type: str
    default: virt_
  header:
    description: Comment written at the top of the file.
    type: str
    default: Managed by Ansible. Changes made here are overwritten.
  mode:
    description: Mode of the rules file.
    type: raw
    default: '0640'
  compare_loaded:
    description:
      - Also run C(auditctl -l) and report in RV(loaded) whether the kernel runs exactly
        the rendered rules (and no rule with a key of a switched-off group).
    type: bool
    default: false
  backup:
    description: Keep a timestamped copy of the previous file next to it when it changes.
    type: bool
    default: false
extends_documentation_fragment:
  - secvirt.kvm.attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the file would change without writing it; O(compare_loaded) still reads the kernel.
  diff_mode:
    support: full
    details: Shows the rules file before and after.
requirements:
  - the C(auditctl) tool (package C(auditd) on Debian, C(audit) on RHEL) for O(compare_loaded)
notes:
  - C(auditctl -l) of audit 3.0 prints an C(exe!=) field as C(exe=); rules are therefore
    compared without the operator of C(exe), and this module never writes C(exe!=).
author:
  - secvirt.kvm contributors (@secvirt)
'''

EXAMPLES = r'''
- name: Audit reads of the libvirt TLS key by anything but libvirtd
  secvirt.kvm.audit_rules:
    dest: /etc/audit/rules.d/70-secvirt-virt.rules
    subjects:
      libvirt_tls_daemon:
        selinux_types: [virtd_t]
        exes: [/usr/sbin/libvirtd]
    groups:
      - name: tls_privkey
        key: virt_tls_privkey
        rules:
          - path: /etc/pki/libvirt/private/serverkey.pem
            perm: rwa
            not_by: libvirt_tls_daemon
  register: virt_rules

- name: Load the rules when the file changed
  ansible.builtin.command:
    argv: [augenrules, --load]
  when: virt_rules is changed
  changed_when: true
'''

RETURN = r'''
rules:
  description: The rule lines written, in order.
  returned: always
  type: list
  elements: str
  sample: ['-a always,exit -F dir=/etc/libvirt -F perm=wa -F key=virt_libvirt_cfg']
keys:
  description: Audit keys that have at least one rule in the file.
  returned: always
  type: list
  elements: str
groups:
  description: Names of the groups written.
  returned: always
  type: list
  elements: str
directories:
  description:
    - Directories that must exist whenever the rules are loaded (watched directories and
      the parents of watched files). Those under C(/run) vanish at every boot; create them
      before auditd loads the rules (for example with C(tmpfiles.d)).
  returned: always
  type: list
  elements: str
  sample: [/etc/libvirt, /run/libvirt]
skipped:
  description: Rules left out, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{group: tls_privkey, rule: 'path=/etc/pki/libvirt-vnc/server-key.pem', reason: 'directory /etc/pki/libvirt-vnc does not exist'}]
selinux:
  description: Whether the rules were rendered for an SELinux host.
  returned: always
  type: bool
loaded:
  description:
    - Comparison with C(auditctl -l). C(in_sync) is true when every rule of the file is
      loaded and no rule keyed with a catalogue key is loaded that the file does not have.
  returned: when O(compare_loaded=true)
  type: dict
  sample: {in_sync: false, missing: ['-a always,exit -F dir=/etc/libvirt -F perm=wa -F key=virt_libvirt_cfg'], unexpected: []}
backup_file:
  description: Copy of the previous file.
  returned: when O(backup=true) and the file changed
  type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible_collections.secvirt.kvm.plugins.module_utils import audit_kernel
from ansible_collections.secvirt.kvm.plugins.module_utils import audit_rules
from ansible_collections.secvirt.kvm.plugins.module_utils.file_write import enforce_attributes, replace_file


def selinux_enabled():
    try:
        with open('/sys/fs/selinux/enforce') as fh:
            fh.read()
        return True
    except (IOError, OSError):
        return False


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type='path', required=True),
            groups=dict(type='list', elements='dict', required=True, options=dict(
                name=dict(type='str', required=True),
                key=dict(type='str', no_log=False),
                description=dict(type='str'),
                enabled=dict(type='bool', default=True),
                rules=dict(type='list', elements='dict', required=True),
            )),
            switches=dict(type='dict', default={}),
            subjects=dict(type='dict', default={}),
            selinux=dict(type='str', choices=['auto', 'enabled', 'disabled'], default='auto'),
            arches=dict(type='list', elements='str', choices=['b64', 'b32'], default=['b64', 'b32']),
            key_prefix=dict(type='str', default='virt_', no_log=False),
            header=dict(type='str', default='Managed by Ansible. Changes made here are overwritten.'),
            mode=dict(type='raw', default='0640'),
            compare_loaded=dict(type='bool', default=False),
            backup=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p['selinux'] == 'auto':
        selinux = selinux_enabled()
    else:
        selinux = p['selinux'] == 'enabled'
    host = audit_rules.Host(selinux=selinux)
    try:
        rendered = audit_rules.render(p['groups'], p['subjects'], host, p['arches'], p['key_prefix'],
                                      p['switches'])
    except audit_rules.RuleError as e:
        module.fail_json(msg='invalid audit rule data: %s' % to_native(e))
    content = audit_rules.render_file(rendered, p['header'])

    dest = p['dest']
    before = None
    if os.path.exists(dest):
        with open(dest, 'rb') as fh:
            before = to_text(fh.read(), errors='surrogate_or_strict')
    changed = before != content
    result = dict(
        changed=False,
        dest=dest,
        rules=rendered.rules,
        keys=rendered.keys(),
        groups=[g['name'] for g, _l, _n in rendered.groups],
        skipped=rendered.skipped,
        directories=sorted(rendered.directories),
        selinux=selinux,
    )
    if module._diff:
        result['diff'] = dict(before=before or '', after=content, before_header=dest, after_header=dest)

    if changed and not module.check_mode:
        if not os.path.isdir(os.path.dirname(dest) or '/'):
            module.fail_json(msg='directory of %s does not exist: is auditd installed?' % dest, **result)
        backup_file = replace_file(module, dest, content, backup=p['backup'])
        if backup_file:
            result['backup_file'] = backup_file
    result['changed'] = changed
    if not module.check_mode or os.path.exists(dest):
        result['changed'] = enforce_attributes(module, dest, result['changed'], mode=p['mode'])

    if p['compare_loaded']:
        auditctl = module.get_bin_path('auditctl', required=True, opt_dirs=['/sbin', '/usr/sbin'])
        rc, out, err = module.run_command([auditctl, '-l'], environ_update=dict(LC_ALL='C'))
        if rc != 0:
            module.fail_json(msg='auditctl -l failed: %s' % (err or out).strip(), **result)
        managed = [g.get('key') for g in p['groups'] if g.get('key')]
        result['loaded'] = audit_kernel.compare_loaded(rendered.rules, out, managed)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
