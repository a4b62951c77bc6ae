#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: audit_report
short_description: Structured virtualization audit events for a time window
version_added: 0.1.0
description:
  - Runs C(ausearch) on the host for the audit keys (default every C(virt_*) key of the
    C(secvirt.kvm.audit) rules) and the libvirt record types (C(VIRT_CONTROL) for guest
    start/stop, C(VIRT_RESOURCE), C(VIRT_MACHINE_ID), C(AVC) denials) in a time window, and
    returns the events as data, so nobody has to read raw logs.
  - Also returns guest sessions (start/stop pairs, like C(auvirt)) and counts per key and type.
  - Read-only; runs in check mode too.
options:
  since:
    description:
      - Start of the window. An age (V(15m), V(2h), V(1d)), ISO 8601 (V(2026-11-23T10:00:00),
        local time unless an offset or V(Z) is given), epoch seconds, or an C(ausearch)
        keyword (V(boot), V(today), V(recent), V(this-week), ...).
    type: str
    default: 1h
  until:
    description: End of the window, same forms as O(since). Default now.
    type: str
  keys:
    description:
      - Audit keys to search; C(ausearch -k) matches the beginning of a key, so V(virt_)
        finds every C(virt_*) key. An empty list searches no keys.
    type: list
    elements: str
    default: [virt_]
  message_types:
    description: Record types to search (C(ausearch -m)). An empty list searches no types.
    type: list
    elements: str
    default: [VIRT_CONTROL, VIRT_RESOURCE, VIRT_MACHINE_ID, AVC]
  vm:
    description: Only events about this guest (name or UUID).
    type: str
  max_events:
    description: Return at most this many events (the most recent ones); RV(truncated) tells.
    type: int
    default: 500
  input:
    description: Search this log file instead of the logs auditd writes (C(ausearch -if)).
    type: path
extends_documentation_fragment:
  - secvirt.kvm.attributes.read_only
requirements:
  - C(ausearch) (package C(auditd) on Debian, C(audit) on RHEL); root to read the logs
notes:
  - C(ausearch) reads standard input instead of the logs when that is not a terminal
    (as under Ansible); the module passes C(--input-logs).
  - The window is applied again to the parsed records to the second, because
    C(ausearch) only takes local dates in the C locale (C(MM/DD/YY)).
author:
  - secvirt.kvm contributors (@secvirt)
'''

EXAMPLES = r'''
- name: Collect what happened to the virtualization host in the last 24 hours
  secvirt.kvm.audit_report:
    since: 24h
  register: virt_audit

- name: Show guest starts and stops
  ansible.builtin.debug:
    msg: "{{ virt_audit.sessions }}"

- name: Who read the TLS server key today?
  secvirt.kvm.audit_report:
    since: today
    keys: [virt_tls_privkey]
    message_types: []
  register: key_reads
'''

RETURN = r'''
events:
  description:
    - One entry per audit event, oldest first. C(kind) is C(syscall) (a rule with a key fired),
      C(virt_control), C(virt_resource), C(virt_machine_id) or C(avc). C(summary) is one readable line.
  returned: always
  type: list
  elements: dict
  sample:
    - serial: 263
      time: '2026-11-23T10:24:37.884Z'
      epoch: 1795429477.884
      kind: virt_control
      types: [VIRT_CONTROL]
      keys: []
      key: null
      vm: web1
      uuid: 5f665c2a-9c1d-444a-91af-e49c69e9f872
      result: success
      virt: {virt: qemu, op: start, reason: booted, vm_pid: '2443'}
      summary: 'VM web1: start (booted) success'
    - serial: 190
      kind: syscall
      key: virt_libvirt_cfg
      syscall: openat
      success: true
      exe: /usr/bin/touch
      uid: root
      auid: root
      paths: [{name: /etc/libvirt/libvirtd.conf, nametype: NORMAL}]
      summary: 'virt_libvirt_cfg: touch (/usr/bin/touch as root, auid root) openat /etc/libvirt/libvirtd.conf: success'
sessions:
  description: Guest sessions from VIRT_CONTROL records (C(stop) is null while running).
  returned: always
  type: list
  elements: dict
  sample: [{vm: web1, uuid: 5f665c2a-9c1d-444a-91af-e49c69e9f872, start: '2026-11-23T10:24:37.884Z',
            start_reason: booted, start_result: success, stop: '2026-11-23T10:24:45.648Z', stop_reason: destroyed}]
counts:
  description: Number of events in total, per key and per record type (before O(max_events)).
  returned: always
  type: dict
  sample: {total: 3, by_key: {virt_libvirt_cfg: 1}, by_type: {VIRT_CONTROL: 2, SYSCALL: 1}}
truncated:
  description: Whether O(max_events) cut the list.
  returned: always
  type: bool
window:
  description: The window searched (ISO 8601 UTC, or the ausearch keyword).
  returned: always
  type: dict
  sample: {since: '2026-11-23T09:24:37.000Z', until: null}
commands:
  description: The ausearch command lines run.
  returned: always
  type: list
  elements: list
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.secvirt.kvm.plugins.module_utils import audit_events


def run_ausearch(module, ausearch, base, selector):
    cmd = [ausearch] + base + selector
    rc, out, err = module.run_command(cmd, environ_update=dict(LC_ALL='C', LANG='C'))
    # ausearch exits 1 when nothing matches; it says "<no matches>", except
    # with --raw, where it prints nothing at all. Real errors print a reason.
    if rc == 1 and ('<no matches>' in (err + out) or not (err + out).strip()):
        return cmd, ''
    if rc != 0:
        module.fail_json(msg='%s failed (rc=%d): %s' % (' '.join(cmd), rc, (err or out).strip()))
    return cmd, out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            since=dict(type='str', default='1h'),
            until=dict(type='str'),
            keys=dict(type='list', elements='str', default=['virt_'], no_log=False),
            message_types=dict(type='list', elements='str',
                               default=['VIRT_CONTROL', 'VIRT_RESOURCE', 'VIRT_MACHINE_ID', 'AVC']),
            vm=dict(type='str'),
            max_events=dict(type='int', default=500),
            input=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    now = time.time()
    try:
        since, since_kw = audit_events.parse_when(p['since'], now)
        until, until_kw = audit_events.parse_when(p['until'], now)
    except audit_events.ReportError as e:
        module.fail_json(msg=to_native(e))
    if since is not None and until is not None and until < since:
        module.fail_json(msg='until (%s) is before since (%s)' % (p['until'], p['since']))
    if p['max_events'] < 1:
        module.fail_json(msg='max_events must be at least 1')
    for t in p['message_types']:
        if not t.replace('_', '').isalnum():
            module.fail_json(msg='%r is not an audit record type' % t)

    ausearch = module.get_bin_path('ausearch', required=True, opt_dirs=['/sbin', '/usr/sbin'])
    base = ['--raw']
    base += ['-if', p['input']] if p['input'] else ['--input-logs']
    if since is not None or since_kw:
        base += ['-ts'] + audit_events.ausearch_time_args(since, since_kw)
    if until is not None or until_kw:
        base += ['-te'] + audit_events.ausearch_time_args(until + 1 if until is not None else None, until_kw)

    commands = []
    found = []
    for key in p['keys']:
        cmd, out = run_ausearch(module, ausearch, base, ['-k', key])
        commands.append(cmd)
        found.append(audit_events.parse_events(out))
    if p['message_types']:
        cmd, out = run_ausearch(module, ausearch, base, ['-m', ','.join(p['message_types'])])
        commands.append(cmd)
        found.append(audit_events.parse_events(out))

    events = audit_events.merge_events(*found)
    events = audit_events.filter_events(events, since=since, until=until, vm=p['vm'],
                                        key_prefixes=p['keys'], types=p['message_types'])
    counts = audit_events.summarize(events)
    sessions = audit_events.sessions(events)
    truncated = len(events) > p['max_events']
    if truncated:
        events = events[-p['max_events']:]
    module.exit_json(
        changed=False,
        events=events,
        sessions=sessions,
        counts=counts,
        truncated=truncated,
        window=dict(
            since=audit_events.iso_time(since) if since is not None else since_kw,
            until=audit_events.iso_time(until) if until is not None else until_kw,
        ),
        commands=commands,
    )


if __name__ == '__main__':
    main()
