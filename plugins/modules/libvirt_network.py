#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: libvirt_network
short_description: Define libvirt networks that attach guests to a host bridge, or remove networks
version_added: 0.1.0
description:
  - With O(state=present), defines a persistent libvirt network C(<forward mode='bridge'/>) on an existing
    host bridge (for example a VLAN bridge made by M(secvirt.kvm.vlan_bridge_config)), starts it and marks it
    autostart, so that guests attach with C(<interface type='network'><source network='NAME'/>).
  - With O(state=absent), stops and undefines any network, for example libvirt's NAT network C(default)
    (C(virbr0)), reducing what the host exposes.
  - Idempotent. The defined network is compared with the wanted one ignoring the uuid, whitespace and attribute
    order; a redefinition keeps the uuid. An active network whose definition changed is restarted only if no
    guest interface is attached (or O(force=true)); otherwise the module warns and returns RV(restart_pending).
  - It exists beside C(community.libvirt.virt_net) so that the collection needs no other collection and so
    that one task does what the vlan_bridges role relies on - compare the whole definition, redefine it in
    place keeping the uuid, and never restart a network that guests are attached to without O(force).
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.libvirt
author:
  - secvirt.kvm contributors (@secvirt)
options:
  name:
    description: Name of the libvirt network.
    type: str
    required: true
  state:
    description: V(present) defines the bridge network, V(absent) stops and undefines the network.
    type: str
    choices: [present, absent]
    default: present
  bridge:
    description: Existing host bridge the guests are attached to. Required with O(state=present).
    type: str
  autostart:
    description: Start the network when the libvirt daemon starts.
    type: bool
    default: true
  active:
    description: Whether the network runs now.
    type: bool
    default: true
  force:
    description:
      - With O(state=absent), remove the network even though guest interfaces are attached to it.
      - With O(state=present), turn an existing network of another forward mode into a bridge network, and
        restart a changed network even though guests are attached.
    type: bool
    default: false
notes:
  - The bridge itself is not created nor removed by this module.
seealso:
  - module: secvirt.kvm.vlan_bridge_config
  - name: libvirt network XML format
    description: Forward modes and bridge networks.
    link: https://libvirt.org/formatnetwork.html
'''

EXAMPLES = r'''
- name: Let guests join VLAN bridge br-web as network "web"
  secvirt.kvm.libvirt_network:
    name: web
    bridge: br-web

- name: Remove libvirt's default NAT network (virbr0)
  secvirt.kvm.libvirt_network:
    name: default
    state: absent
'''

RETURN = r'''
actions:
  description: What was (or in check mode would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: [define, start, autostart]
xml:
  description: The network definition after the change (the wanted one in check mode).
  returned: state=present
  type: str
restart_pending:
  description: The network runs with its previous definition because guests are attached to it.
  returned: when a changed network could not be restarted
  type: bool
ports:
  description: UUIDs of the guest interfaces attached to the network.
  returned: on failure, when guests block the removal
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import run_libvirt_module, uri_argument_spec
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_network import run_network


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **uri_argument_spec(),
            name=dict(type='str', required=True),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            bridge=dict(type='str'),
            autostart=dict(type='bool', default=True),
            active=dict(type='bool', default=True),
            force=dict(type='bool', default=False),
        ),
        required_if=[('state', 'present', ('bridge',))],
        supports_check_mode=True,
    )
    run_libvirt_module(module, lambda conn: run_network(conn, module.params, check_mode=module.check_mode))


if __name__ == '__main__':
    main()
