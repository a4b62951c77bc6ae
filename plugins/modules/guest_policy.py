#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: guest_policy
short_description: Check every libvirt guest of a host against a security policy, and bring guests into it
version_added: 0.2.0
description:
  - Reads every guest defined on the host (its persistent definition, with secrets, or the live one of a
    transient guest) in one connection and checks it against the policy - a network filter on every
    interface (C(clean-traffic) by default, with the guest's IP addresses), sVirt confinement not switched
    off (or a static label where asked), consoles on allowed addresses without C(passwd=) and SPICE TLS-only,
    disks with a declared format, in the image directories, without backing files outside the allowed
    directories and within a virtual size bound (image headers read, never probed), no host device
    passthrough unless allowed, and the CPU, memory, block I/O and bandwidth limits the policy names.
  - The checks are those of the C(prepare) hook the secvirt.kvm.guest_policy role installs in enforce mode
    (the same code), so what this module reports is what the hook would refuse at the guest's next start.
  - With O(mode=fix), changes the persistent definitions (and the running guests where libvirt can,
    filters and limits) and lists the guests that need a restart for the rest. Disks and host devices are
    never changed (they are reported for the operator). Guests are never restarted.
  - Bad policy (unknown check, filter not defined in libvirt, a size without a unit, a static SELinux label
    without two MCS categories) fails before anything changes.
options:
  mode:
    description: C(report) changes nothing; C(fix) changes the definitions that violate the policy.
    type: str
    choices: [report, fix]
    default: report
  policy:
    description:
      - The default policy of every guest. Keys C(checks) (list, default every check), C(filter),
        C(filter_parameters), C(interfaces) (per MAC C(ip), C(filter), C(parameters)), C(seclabel)
        (C(type) dynamic or static, C(model), C(label)), C(limits) (C(cpu_shares), C(vcpu_period),
        C(vcpu_quota), C(memory_hard_limit), C(memory_soft_limit), C(blkio_weight), C(interface_inbound),
        C(interface_outbound)), C(graphics_listen), C(image_dirs), C(backing_dirs), C(max_virtual_size),
        C(allow_hostdev). The role's README documents each.
    type: dict
    default: {}
  guests:
    description: Per-guest overrides of O(policy), by guest name (C(limits), C(interfaces) and C(filter_parameters) merge key by key).
    type: dict
    default: {}
notes:
  - Check mode opens a read-write connection (the C(passwd=) check needs the secure XML) and changes nothing.
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.libvirt
author:
  - secvirt.kvm contributors (@secvirt)
'''

EXAMPLES = r'''
- name: Report every guest that violates the policy
  secvirt.kvm.guest_policy:
    policy:
      graphics_listen: [192.0.2.10]
      image_dirs: [/var/lib/libvirt/images]
      max_virtual_size: 2TiB
      limits: {memory_hard_limit: 8GiB}
    guests:
      web1:
        interfaces:
          "52:54:00:12:34:56": {ip: 198.51.100.20}
  register: report
'''

RETURN = r'''
guests:
  description: Per guest, its violations (before any fix), what was fixed and whether it needs a restart.
  returned: always
  type: dict
  sample: {web1: {active: true, violations: [{check: filter, reason: "interface 52:54:00:12:34:56 has no network filter"}],
           fixed: ["filter on 52:54:00:12:34:56"], remaining: [], restart_required: false}}
violating:
  description: Names of the guests that violate the policy (before any fix).
  returned: always
  type: list
  elements: str
remaining:
  description: Names of the guests that still violate the policy after this run (what only the operator can fix).
  returned: always
  type: list
  elements: str
restart_required:
  description: Names of running guests that run with a setting the fix changed only in their definition.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils import guest_policy as gp
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import seclabel_xml as slx
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import (
    LibvirtModuleError, domain_xml, host_security_models, lookup_nwfilter, run_libvirt_module, uri_argument_spec)
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_limits import run_limits
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_nwfilter import run_binding
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_seclabel import run_seclabel


def _validate(conn, policy):
    """What needs libvirt to check: filters exist, static labels are sound."""
    everything = [('default policy', policy['default'])] + sorted(('guest %s' % n, r) for n, r in policy['guests'].items())
    for where, rules in everything:
        names = set([rules['filter']] + [i['filter'] for i in rules['interfaces'].values() if i['filter']])
        for name in sorted(n for n in names if n):
            if 'filter' in rules['checks'] and lookup_nwfilter(conn, name) is None:
                raise LibvirtModuleError('%s: network filter %s is not defined in libvirt (define it first with '
                                         'secvirt.kvm.libvirt_nwfilter)' % (where, name))
        label = rules['seclabel']
        if label['type'] == 'static':
            try:
                slx.validate_seclabel({'type': 'static', 'model': label['model'], 'label': label['label'],
                                       'imagelabel': label.get('imagelabel'), 'relabel': True})
            except lx.XMLValidationError as exc:
                raise LibvirtModuleError('%s seclabel: %s' % (where, exc))


def _limit_params(name, rules, dom_elem):
    limits = rules['limits']
    params = {'domain': name, 'live': True}
    for key in ('cpu_shares', 'vcpu_period', 'vcpu_quota', 'blkio_weight'):
        if key in limits:
            params[key] = limits[key]
    for key in ('memory_hard_limit', 'memory_soft_limit'):
        if key in limits:
            params[key] = '%dKiB' % limits[key]
    if 'interface_inbound' in limits or 'interface_outbound' in limits:
        params['interfaces'] = [{'mac': lx.interface_mac(i), 'inbound': limits.get('interface_inbound'),
                                 'outbound': limits.get('interface_outbound')}
                                for i in lx.domain_interfaces(dom_elem) if lx.interface_mac(i)]
    return params


def _fix(conn, dom, name, rules, violations, check_mode, result, diffs, listens=None):
    """Apply what can be applied; return (fixed, restart_required)."""
    checks = set(v[0] for v in violations)
    fixed, restart = [], False
    elem = lx.parse_xml(domain_xml(dom, inactive=True, secure=True), 'domain XML')
    if 'filter' in checks:
        for iface in lx.domain_interfaces(elem):
            mac = lx.interface_mac(iface)
            if not mac:
                continue
            spec = rules['interfaces'].get(mac, {})
            params = dict(rules['filter_parameters'])
            params.update(spec.get('parameters') or {})
            if spec.get('ip'):
                params['IP'] = spec['ip']
            out = run_binding(conn, {'domain': name, 'mac': mac, 'filter': spec.get('filter') or rules['filter'],
                                     'parameters': params, 'state': 'present', 'live': True}, check_mode=check_mode)
            if out['changed']:
                fixed.append('filter %s on %s%s' % (spec.get('filter') or rules['filter'], mac,
                                                    ' (live too)' if out['live_changed'] else ''))
                diffs.append(out['diff'])
            restart = restart or out['restart_required']
            result['warnings'].extend(out.get('warnings', []))
    if 'seclabel' in checks:
        wanted = rules['seclabel']
        models = [m['model'] for m in host_security_models(conn) if m['model'] != 'none']
        for label in elem.findall('seclabel'):
            if label.get('type') == 'none' or label.get('model') == 'none':
                model = label.get('model') if label.get('model') not in (None, 'none') else (models[0] if models else None)
                if model and not (wanted['type'] == 'static' and wanted['model'] == model):
                    out = run_seclabel(conn, {'domain': name, 'model': model, 'type': 'dynamic'},
                                       check_mode=check_mode)
                    if out['changed']:
                        fixed.append('dynamic %s label' % model)
                        diffs.append(out.get('diff'))
                    restart = restart or out['restart_required'] or bool(dom.isActive())
        if wanted['type'] == 'static':
            out = run_seclabel(conn, {'domain': name, 'model': wanted['model'], 'type': 'static',
                                      'label': wanted['label'], 'relabel': True}, check_mode=check_mode)
            if out['changed']:
                fixed.append('static %s label %s' % (wanted['model'], wanted['label']))
                diffs.append(out.get('diff'))
            restart = restart or out['restart_required']
    if 'graphics' in checks:
        before = domain_xml(dom, inactive=True, secure=True)
        after, changes = gp.fix_graphics(before, rules, qemu_conf_listen=listens)
        if changes:
            if not check_mode:
                conn.defineXML(after)
            fixed.extend(changes)
            diffs.append(lx.diff_dict(lx.to_string(lx.parse_xml(before)), lx.to_string(lx.parse_xml(after)),
                                      'guest %s (definition)' % name, 'guest %s (consoles fixed)' % name))
            restart = restart or bool(dom.isActive())
    if 'limits' in checks:
        out = run_limits(conn, _limit_params(name, rules, elem), check_mode=check_mode)
        if out['changed']:
            fixed.append('limits%s' % (' (live too)' if out['live_changed'] else ''))
            diffs.append(out['diff'])
        result['warnings'].extend(out.get('warnings', []))
    return fixed, restart


def run_policy(conn, params, check_mode):
    try:
        policy = gp.normalize_policy(params['policy'], params['guests'])
    except gp.PolicyError as exc:
        raise LibvirtModuleError(str(exc))
    _validate(conn, policy)
    unknown = sorted(set(policy['guests']) - set(d.name() for d in conn.listAllDomains(0)))
    result = {'changed': False, 'guests': {}, 'violating': [], 'remaining': [], 'restart_required': [],
              'warnings': []}
    if unknown:
        result['warnings'].append('the policy names guests that are not defined on this host: %s' % ', '.join(unknown))
    diffs = []
    listens = gp.qemu_conf_listens()
    for dom in sorted(conn.listAllDomains(0), key=lambda d: d.name()):
        name = dom.name()
        rules = gp.rules_for(policy, name)
        xml_text = domain_xml(dom, inactive=bool(dom.isPersistent()), secure=True)
        violations = gp.check_domain(xml_text, policy, qemu_conf_listen=listens)
        entry = {'active': bool(dom.isActive()), 'persistent': bool(dom.isPersistent()),
                 'violations': [{'check': c, 'reason': r} for c, r in violations], 'fixed': [], 'remaining': [],
                 'restart_required': False}
        if violations:
            result['violating'].append(name)
        if violations and params['mode'] == 'fix' and dom.isPersistent():
            entry['fixed'], entry['restart_required'] = _fix(conn, dom, name, rules, violations, check_mode,
                                                             result, diffs, listens)
            result['changed'] = result['changed'] or bool(entry['fixed'])
            if not check_mode:
                violations = gp.check_domain(domain_xml(dom, inactive=True, secure=True), policy, qemu_conf_listen=listens)
            else:
                fixable = set(('filter', 'seclabel', 'graphics', 'limits'))
                violations = [v for v in violations if v[0] not in fixable]
        entry['remaining'] = [{'check': c, 'reason': r} for c, r in violations]
        if violations:
            result['remaining'].append(name)
        if entry['restart_required']:
            result['restart_required'].append(name)
        result['guests'][name] = entry
    result['diff'] = [d for d in diffs if d] or None
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **uri_argument_spec(),
            mode=dict(type='str', default='report', choices=['report', 'fix']),
            policy=dict(type='dict', default={}),
            guests=dict(type='dict', default={}),
        ),
        supports_check_mode=True,
    )
    run_libvirt_module(module, lambda conn: run_policy(conn, module.params, module.check_mode), readonly=False,
                       user_errors=(gp.PolicyError, lx.XMLValidationError))


if __name__ == '__main__':
    main()
