# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: firewalld_plan
short_description: Work out the firewalld rich rules to add and the openings to take away for a set of TCP port ranges
version_added: 0.2.0
author:
  - secvirt.kvm contributors (@secvirt)
description:
  - Given what a firewalld zone holds now (the output of C(firewall-cmd --info-zone=ZONE), or a dict of its rich
    rules, ports and services), the sources that may reach each managed TCP port range,
    and the services known to open those ranges, returns the rich rules to add (one per source and range, in the
    form firewalld lists them) and the C(firewall-cmd) arguments that take away every other opening of a managed
    port to any source.
  - Openings of other ports (ssh, ...) are never touched, so the plan cannot lock the operator out.
  - Used by the C(secvirt.kvm.qemu_tls) role.
options:
  _input:
    description:
      - What the zone holds now, the text C(firewall-cmd --info-zone=ZONE) prints, or a dict with C(rich_rules),
        C(ports) and C(services), each a list of strings.
    type: raw
    required: true
  rules:
    description:
      - The intended openings, each a dict with C(sources) (addresses or CIDRs; IPv6 ones contain a colon)
        and C(ports) (C(N) or C(N-M)).
    type: list
    elements: dict
    required: true
  services:
    description: firewalld services that open some of the managed ports (taken away when present).
    type: list
    elements: str
    default: []
'''

EXAMPLES = r'''
- name: Plan the console rules
  ansible.builtin.set_fact:
    plan: >-
      {{ info_zone.stdout | secvirt.kvm.firewalld_plan(rules=[{'sources': ['10.0.0.0/24'], 'ports': '5900-5999'}], services=['vnc-server']) }}
'''

RETURN = r'''
_value:
  description: C(add), the rich rules to add; C(remove), C(firewall-cmd) arguments (C(--remove-rich-rule=...),
    C(--remove-port=...), C(--remove-service=...)).
  type: dict
'''

import re

from ansible.errors import AnsibleFilterError

_RICH_PORT = re.compile(r'\bport\s+port="(\d+)(?:-(\d+))?"\s+protocol="tcp"')


def _span(text):
    """'5900' or '5900-5999' as (5900, 5999)."""
    match = re.match(r'^(\d+)(?:-(\d+))?$', str(text).strip())
    if not match:
        raise AnsibleFilterError('firewalld_plan: %r is not a port or a port range' % (text,))
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if low > high:
        raise AnsibleFilterError('firewalld_plan: the port range %r is empty' % (text,))
    return low, high


def _overlaps(span, spans):
    return any(span[0] <= high and low <= span[1] for low, high in spans)


def rich_rule(source, ports):
    family = 'ipv6' if ':' in source else 'ipv4'
    return 'rule family="%s" source address="%s" port port="%s" protocol="tcp" accept' % (family, source, ports)


def parse_info_zone(text):
    """firewall-cmd --info-zone: 'key: value' lines, the rich rules indented below 'rich rules:'."""
    out = {'rich_rules': [], 'ports': [], 'services': []}
    in_rich = False
    for line in text.splitlines():
        stripped = line.strip()
        if in_rich and line[:1] == '\t' and stripped.startswith('rule '):
            out['rich_rules'].append(stripped)
            continue
        key, sep, value = stripped.partition(':')
        in_rich = sep and key == 'rich rules'
        if sep and key in ('ports', 'services'):
            out[key] = value.split()
    return out


def firewalld_plan(current, rules, services=None):
    if isinstance(current, str):
        current = parse_info_zone(current)
    if not isinstance(current, dict):
        raise AnsibleFilterError('firewalld_plan: the input must be the output of firewall-cmd --info-zone or a dict')
    spans = []
    wanted = []
    for rule in rules:
        ports = str(rule['ports'])
        spans.append(_span(ports))
        for source in rule['sources']:
            line = rich_rule(source, ports)
            if line not in wanted:
                wanted.append(line)
    present = [line.strip() for line in current.get('rich_rules') or [] if line.strip()]
    remove = []
    for line in present:
        match = _RICH_PORT.search(line)
        if match and line not in wanted and _overlaps((int(match.group(1)), int(match.group(2) or match.group(1))), spans):
            remove.append('--remove-rich-rule=' + line)
    for port in current.get('ports') or []:
        number, _sep, proto = port.partition('/')
        if proto == 'tcp' and _overlaps(_span(number), spans):
            remove.append('--remove-port=' + port)
    for service in current.get('services') or []:
        if service in (services or []):
            remove.append('--remove-service=' + service)
    return {'add': [line for line in wanted if line not in present], 'remove': remove}


class FilterModule(object):
    def filters(self):
        return {'firewalld_plan': firewalld_plan}
