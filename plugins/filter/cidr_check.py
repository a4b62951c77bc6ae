# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: cidr_check
short_description: Parse a list of IPv4/IPv6 networks strictly and report the invalid and the too wide ones
version_added: 0.1.0
author:
  - secvirt.kvm contributors (@secvirt)
description:
  - Parses each entry with Python's C(ipaddress) module, strictly - C(192.0.2.0/24) or a single address
    (C(192.0.2.7), C(2001:db8::1)); no host bits set, no netmask notation (C(/255.255.255.0)), no zone
    index (C(%eth0)), no leading zeros, no spaces, nothing but hex digits, C(:), C(.) and one C(/prefix).
  - Reports an entry as broad when its prefix is 0 (every address) or shorter than the minimum of its
    address family.
  - Used by the C(secvirt.kvm.libvirt_remote) role to validate C(libvirt_remote_management_cidrs) before
    they are written into nftables or firewalld rules.
positional: min_prefix_v4, min_prefix_v6
options:
  _input:
    description: The networks, as strings.
    type: list
    elements: str
    required: true
  min_prefix_v4:
    description: IPv4 networks with a shorter prefix are reported in RV(_value.broad). 0 to 32.
    type: int
    default: 8
  min_prefix_v6:
    description: IPv6 networks with a shorter prefix are reported in RV(_value.broad). 0 to 128.
    type: int
    default: 32
'''

EXAMPLES = r'''
- name: Refuse malformed management networks, naming them
  ansible.builtin.assert:
    that:
      - (cidrs | secvirt.kvm.cidr_check).invalid | length == 0
    fail_msg: "{{ (cidrs | secvirt.kvm.cidr_check).invalid | join('; ') }}"
  vars:
    cidrs: [192.0.2.0/24, "2001:db8:10::/64"]

# => {"invalid": ["'10.0.0.1/8': host bits set (the network is 10.0.0.0/8)"],
#     "broad": ["0.0.0.0/0"], "networks": ["0.0.0.0/0", "192.0.2.0/24"]}
- name: Check a list with a wider minimum for IPv4
  ansible.builtin.debug:
    msg: "{{ ['10.0.0.1/8', '0.0.0.0/0', '192.0.2.0/24'] | secvirt.kvm.cidr_check(min_prefix_v4=16) }}"
'''

RETURN = r'''
_value:
  description: What was found.
  type: dict
  contains:
    invalid:
      description: One message per entry that is not a network, naming the entry and why.
      type: list
      elements: str
    broad:
      description: Valid entries whose prefix is 0 or shorter than the minimum of their family, as given.
      type: list
      elements: str
    networks:
      description: The valid entries in canonical form (a single address becomes C(/32) or C(/128)).
      type: list
      elements: str
'''

import ipaddress
import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence
from ansible.module_utils.six import integer_types, string_types, text_type

_CHARS = re.compile(r'^[0-9A-Fa-f:./]+\Z')
_PREFIX = re.compile(r'^[0-9]{1,3}\Z')
_MAX_PREFIX = {4: 32, 6: 128}


def _minimum(value, name, version):
    if isinstance(value, bool) or not isinstance(value, integer_types) or not 0 <= value <= _MAX_PREFIX[version]:
        raise AnsibleFilterError('cidr_check: %s must be an integer from 0 to %d, not %r'
                                 % (name, _MAX_PREFIX[version], value))
    return value


def _parse(value):
    """``(network, None)`` or ``(None, reason)``."""
    if not _CHARS.match(value):
        return None, ('only hex digits, ":", "." and one "/prefix" are allowed (no other characters, '
                      'spaces, zone index or host name)')
    if '/' in value and not _PREFIX.match(value.split('/', 1)[1]):
        return None, 'the prefix length must be a number of bits (netmask notation is not accepted)'
    try:
        return ipaddress.ip_network(text_type(value), strict=True), None
    except ValueError as exc:
        try:
            network = ipaddress.ip_network(text_type(value), strict=False)
        except ValueError:
            return None, 'not an IPv4 or IPv6 network (%s)' % exc
        return None, 'host bits set (the network is %s)' % network


def cidr_check(cidrs, min_prefix_v4=8, min_prefix_v6=32):
    """Sort ``cidrs`` into invalid entries, too wide networks and canonical networks."""
    if not is_sequence(cidrs):
        raise AnsibleFilterError('cidr_check: expected a list of networks, got %s' % type(cidrs).__name__)
    minimum = {4: _minimum(min_prefix_v4, 'min_prefix_v4', 4), 6: _minimum(min_prefix_v6, 'min_prefix_v6', 6)}
    result = {'invalid': [], 'broad': [], 'networks': []}
    for value in cidrs:
        if not isinstance(value, string_types):
            result['invalid'].append('%s: not a string' % (value,))
            continue
        network, reason = _parse(value)
        if network is None:
            result['invalid'].append('%r: %s' % (text_type(value), reason))
            continue
        if network.prefixlen == 0 or network.prefixlen < minimum[network.version]:
            result['broad'].append(text_type(value))
        result['networks'].append(text_type(network))
    return result


class FilterModule(object):
    def filters(self):
        return {'cidr_check': cidr_check}
