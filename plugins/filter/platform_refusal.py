# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: platform_refusal
short_description: Say why a host is not a platform the collection's roles were tested on
version_added: 0.1.0
author:
  - secvirt.kvm contributors (@secvirt)
description:
  - The one list of the platforms the test suite boots (Debian 12 bookworm and Debian 13 trixie). Every role's
    first task asserts that this filter returns an empty string, and fails with the returned message otherwise,
    before it changes anything.
  - A new platform is added here together with the molecule scenario that boots it.
positional: role
options:
  _input:
    description: The host's facts (C(ansible_facts)); C(distribution) and C(distribution_major_version) are read.
    type: dict
    required: true
  role:
    description: Name of the role, used in the message.
    type: str
    required: true
'''

EXAMPLES = r'''
- name: Refuse a platform the role was never tested on, before any change
  ansible.builtin.assert:
    that: __refusal | length == 0
    fail_msg: "{{ __refusal }}"
    quiet: true
  vars:
    __refusal: "{{ ansible_facts | secvirt.kvm.platform_refusal('pki') }}"
'''

RETURN = r'''
_value:
  description:
    - An empty string on a tested platform; otherwise the message that names the role, the tested platforms and what
      the host runs.
  type: str
'''

from ansible.errors import AnsibleFilterError

# (distribution, major version) -> release name: what `make test` boots
TESTED_PLATFORMS = (('Debian', '12', 'bookworm'), ('Debian', '13', 'trixie'))


def platform_refusal(facts, role):
    if not isinstance(facts, dict):
        raise AnsibleFilterError('platform_refusal expects the host facts (a dict), got %s' % type(facts).__name__)
    distribution = facts.get('distribution') or ''
    major = str(facts.get('distribution_major_version') or '')
    if any(distribution == name and major == version for name, version, _codename in TESTED_PLATFORMS):
        return ''
    tested = ' and '.join('%s %s (%s)' % platform for platform in TESTED_PLATFORMS)
    runs = ('%s %s' % (distribution, facts.get('distribution_version') or major)).strip() or 'an unknown distribution'
    return ('secvirt.kvm.%s is tested on %s only; this host runs %s. Nothing was changed.' % (role, tested, runs))


class FilterModule(object):
    def filters(self):
        return {'platform_refusal': platform_refusal}
