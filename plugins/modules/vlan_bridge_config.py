#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: vlan_bridge_config
short_description: Persistent 802.1Q VLAN guest bridges without host addresses, applied with a rollback
version_added: 0.1.0
description:
  - For each guest network, creates the VLAN subinterface C(<trunk>.<vlan_id>) and a bridge that has it as its
    only non-guest port, with STP as configured and no host IP address (IPv6 disabled and ARP for host addresses
    ignored on the bridge, its port and, with O(isolate_trunks), the trunk).
  - The configuration is written for the host's network stack, so it survives a reboot
    (C(/etc/network/interfaces.d/secvirt-vlan-<bridge>) for ifupdown with bridge-utils;
    C(/etc/systemd/network/60-secvirt-vlan-<bridge>{,.port}.{netdev,network}) and
    C(60-secvirt-trunk-<trunk>.network) for systemd-networkd), plus
    C(/etc/sysctl.d/60-secvirt-vlan-<bridge>.conf) and C(60-secvirt-trunk-<trunk>.conf) for the per-interface
    settings, which systemd-udevd applies whenever the interface appears.
  - Only the files of the listed networks (and the shared files of their trunks) are written; networks that are
    not listed keep their files, links and trunk VLANs.
  - The change is applied with that stack, touching only the guest bridges (C(ifup)/C(ifdown) of those
    bridges, C(networkctl reload)); the management interface is never reconfigured, and the module checks
    afterwards that it is still up with all its addresses.
  - Existing bridges are converged in place (STP, forward delay, MTU, VLAN port) rather than recreated, because
    recreating a bridge would detach the interfaces of running guests.
  - If a link does not come up as wanted within O(timeout), the files and links are restored to what they were
    and the module fails with the reason.
  - Everything is validated before the first change (VLAN ids 1-4094, unique bridge names of at most 15
    characters, no VLAN twice on one trunk, trunk not the management interface, no foreign ports or host
    addresses on existing bridges, no guests still attached to a bridge being removed).
author:
  - secvirt.kvm contributors (@secvirt)
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
options:
  backend:
    description:
      - The network stack that manages the host (the one that must recreate the bridges at boot).
      - NetworkManager is not supported yet.
    type: str
    required: true
    choices: [ifupdown, networkd]
  management_interface:
    description:
      - The host's management interface. It is never touched; it may not be a trunk, bridge or VLAN port.
    type: str
    required: true
  networks:
    description:
      - The guest networks. Networks not listed are left alone; remove one with O(networks[].state=absent).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the guest network (unique).
        type: str
        required: true
      vlan_id:
        description: 802.1Q VLAN id, 1-4094.
        type: int
        required: true
      trunk:
        description: Interface carrying the tagged frames; C(<trunk>.<vlan_id>) must fit in 15 characters.
        type: str
        required: true
      bridge:
        description: Bridge name (at most 15 letters, digits, C(_) or C(-)). Defaults to C(br<vlan_id>).
        type: str
      stp:
        description: Run the kernel's spanning tree protocol on the bridge.
        type: bool
        default: true
      forward_delay:
        description: STP forward delay in seconds (2-30 with STP on). Kernel default (15) when unset.
        type: int
      mtu:
        description: MTU of the bridge and its VLAN port. Left to the kernel when unset.
        type: int
      state:
        description: V(absent) takes the bridge and its VLAN port down and removes their configuration.
        type: str
        choices: [present, absent]
        default: present
  isolate_trunks:
    description:
      - Also disable IPv6 and ARP replies for host addresses on the trunks, so that the host takes no part in
        the untagged network of a trunk either. The module refuses trunks that carry host addresses then.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the links to reach the wanted state before rolling back.
    type: int
    default: 30
notes:
  - ifupdown needs bridge-utils (it creates the bridges and their VLAN ports from C(bridge_ports)).
  - With systemd-networkd the module owns the C(.network) file of each trunk (it lists the VLANs); no other
    C(.network) file may match a trunk.
  - The host still routes IPv4 packets that guests address to the host's own addresses (Linux weak host
    model); drop input from guest bridges in the host firewall.
seealso:
  - module: secvirt.kvm.libvirt_network
'''

EXAMPLES = r'''
- name: Give guests VLANs 100 and 200 from eth1, never touching eth0
  secvirt.kvm.vlan_bridge_config:
    backend: ifupdown
    management_interface: eth0
    networks:
      - name: web
        vlan_id: 100
        trunk: eth1
        bridge: br-web
        stp: true
        forward_delay: 4
      - name: db
        vlan_id: 200
        trunk: eth1
        stp: false

- name: Remove a guest network
  secvirt.kvm.vlan_bridge_config:
    backend: ifupdown
    management_interface: eth0
    networks:
      - name: old
        vlan_id: 300
        trunk: eth1
        state: absent
'''

RETURN = r'''
backend:
  description: The network stack the configuration was written for.
  returned: always
  type: str
  sample: ifupdown
networks:
  description: Per network, what was (or in check mode would be) done, and what differed before.
  returned: always
  type: list
  elements: dict
  sample: [{name: web, bridge: br-web, port: eth1.100, vlan_id: 100, trunk: eth1, state: present,
            action: create, problems: ["bridge br-web does not exist"]}]
files:
  description: Configuration files written or removed.
  returned: always
  type: list
  elements: str
  sample: [/etc/network/interfaces.d/secvirt-vlan-br-web, /etc/sysctl.d/60-secvirt-vlan-br-web.conf]
commands:
  description: Commands run on the host, in order (including a rollback's).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.vlan_bridge import VlanBridgeError
from ansible_collections.secvirt.kvm.plugins.module_utils.vlan_bridge_apply import run_vlan_bridges
from ansible_collections.secvirt.kvm.plugins.module_utils.vlan_bridge_host import Host


def main():
    module = AnsibleModule(
        argument_spec=dict(
            backend=dict(type='str', required=True, choices=['ifupdown', 'networkd']),
            management_interface=dict(type='str', required=True),
            networks=dict(type='list', elements='dict', required=True, options=dict(
                name=dict(type='str', required=True),
                vlan_id=dict(type='int', required=True),
                trunk=dict(type='str', required=True),
                bridge=dict(type='str'),
                stp=dict(type='bool', default=True),
                forward_delay=dict(type='int'),
                mtu=dict(type='int'),
                state=dict(type='str', default='present', choices=['present', 'absent']),
            )),
            isolate_trunks=dict(type='bool', default=True),
            timeout=dict(type='int', default=30),
        ),
        supports_check_mode=True,
    )
    host = Host(lambda argv: module.run_command(argv, environ_update={'LC_ALL': 'C'}))
    try:
        result = run_vlan_bridges(host, module.params, check_mode=module.check_mode, want_diff=module._diff)
    except VlanBridgeError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
