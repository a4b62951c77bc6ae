#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: libvirt_nwfilter_info
short_description: List libvirt network filters and their bindings
version_added: 0.1.0
description:
  - Returns the host's network filters (C(virsh nwfilter-list) and C(nwfilter-dumpxml)) with the filters
    and guests that reference each of them, and the filter bindings of running guests
    (C(virsh nwfilter-binding-list)).
  - Uses a read-only connection.
extends_documentation_fragment:
  - secvirt.kvm.attributes.read_only
  - secvirt.kvm.libvirt
author:
  - secvirt.kvm contributors (@secvirt)
options:
  name:
    description: Only return this filter (the module fails when it does not exist).
    type: str
seealso:
  - module: secvirt.kvm.libvirt_nwfilter
  - module: secvirt.kvm.libvirt_nwfilter_binding
'''

EXAMPLES = r'''
- name: Read all network filters
  secvirt.kvm.libvirt_nwfilter_info:
  register: nwfilters

- name: Show who uses clean-traffic
  ansible.builtin.debug:
    msg: "{{ (nwfilters.filters | selectattr('name', 'equalto', 'clean-traffic') | first).referenced_by }}"
'''

RETURN = r'''
filters:
  description: The filters, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Filter name.
      type: str
    uuid:
      description: Filter uuid.
      type: str
    chain:
      description: Chain of the filter.
      type: str
    priority:
      description: Chain priority (libvirt's default for the chain when not set).
      type: int
    rules:
      description: Number of rules.
      type: int
    filterrefs:
      description: Names of the included filters.
      type: list
      elements: str
    referenced_by:
      description: Filters and guests (persistent or running definition) that reference the filter.
      type: dict
    xml:
      description: The filter XML.
      type: str
  sample: [{name: clean-traffic, uuid: 9f4c1d2e-..., chain: root, priority: 0, rules: 0,
            filterrefs: [no-mac-spoofing, no-ip-spoofing, no-arp-spoofing, allow-incoming-ipv4,
                         no-other-l2-traffic, qemu-announce-self],
            referenced_by: {filters: [mysecfilter], guests: [web01]}, xml: "<filter ..."}]
bindings:
  description: Filters instantiated on the interfaces of running guests.
  returned: always
  type: list
  elements: dict
  sample: [{portdev: vnet0, filter: clean-traffic}]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import run_libvirt_module, uri_argument_spec
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_nwfilter import list_nwfilters


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **uri_argument_spec(),
            name=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    run_libvirt_module(module, lambda conn: list_nwfilters(conn, module.params['name']), readonly=True)


if __name__ == '__main__':
    main()
