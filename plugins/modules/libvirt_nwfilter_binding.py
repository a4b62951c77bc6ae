#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: libvirt_nwfilter_binding
short_description: Attach a libvirt network filter to a guest interface
version_added: 0.1.0
description:
  - Sets the C(<filterref>) of one interface of a guest, selected by MAC address or target device
    (C(vnetN)), with its parameters (for example C(IP), C(CTRL_IP_LEARNING), C(DHCPSERVER)).
  - Changes the persistent definition and, for a running guest, the live interface, so that libvirt
    instantiates the filter's ebtables/iptables rules at once. When libvirt cannot change a running
    interface the module says so (RV(restart_required)) instead of failing.
  - V(state=absent) removes the filter from the interface.
  - libvirt implements the filter's layer-2 protocols (C(mac), C(vlan), C(stp), C(arp), C(rarp), C(ip), C(ipv6))
    with ebtables, but the layer-3/4 ones (C(tcp), C(udp), C(udplite), C(sctp), C(icmp), C(igmp), C(esp), C(ah),
    C(all) and their C(-ipv6) variants, C(icmpv6)) with iptables/ip6tables rules on the bridge port. Bridged guest
    traffic passes those only when C(br_netfilter) is loaded and C(net.bridge.bridge-nf-call-iptables)
    (C(bridge-nf-call-ip6tables) for IPv6) is 1, globally or for the guest's bridge (C(nf_call_iptables)). The
    module resolves the filter and every filter it includes (C(<filterref>), read-only), reads these settings
    on the host and says when layer-3/4 rules would not be in force (O(bridge_netfilter)).
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.libvirt
  - secvirt.kvm.libvirt.domain
author:
  - secvirt.kvm contributors (@secvirt)
options:
  mac:
    description: MAC address of the interface.
    type: str
  target_dev:
    description:
      - Host-side device of the interface (C(vnet0)). Looked up in the running guest first, so this
        only works for a running guest unless the definition names its target device.
    type: str
  filter:
    description: Name of the network filter to attach. Required with O(state=present).
    type: str
  parameters:
    description:
      - Filter parameters. A list value passes the parameter several times (for example several IP
        addresses).
    type: dict
  state:
    description: Whether the interface references the filter.
    type: str
    choices: [present, absent]
    default: present
  live:
    description:
      - Also change a running guest. With V(false) only the persistent definition changes and
        RV(restart_required) tells whether a restart is needed.
    type: bool
    default: true
  bridge_netfilter:
    description:
      - What to do, with O(state=present), when the filter (or a filter it includes) has layer-3/4 rules that
        bridged guest traffic never reaches on this host, because C(br_netfilter) is not loaded or
        C(net.bridge.bridge-nf-call-iptables) / C(bridge-nf-call-ip6tables) is 0 (and the bridge's own
        C(nf_call_iptables) / C(nf_call_ip6tables) too).
      - V(warn) attaches the filter and warns, naming the filter, the protocols and the setting.
        V(fail) refuses before changing anything. V(ignore) says nothing; RV(layer3_rules_enforced) is still
        returned.
      - With a libvirt URI of another host the settings cannot be read; V(warn) warns and V(fail) refuses
        when the filter has layer-3/4 rules.
      - The secvirt.kvm.vlan_bridges role sets C(bridge-nf-call-iptables=0) on purpose; see
        docs/libvirt-modules.md for the trade-off.
    type: str
    choices: [warn, fail, ignore]
    default: warn
notes:
  - The filter must already be defined (M(secvirt.kvm.libvirt_nwfilter)).
  - libvirt applies filters to interfaces of type network, bridge and ethernet only.
  - C(clean-traffic) and the other filters libvirt ships use only ebtables protocols, so they are in force
    whatever C(bridge-nf-call-iptables) says.
seealso:
  - module: secvirt.kvm.libvirt_nwfilter
'''

EXAMPLES = r'''
- name: Stop web01 spoofing MAC, IP and ARP on its first NIC
  secvirt.kvm.libvirt_nwfilter_binding:
    domain: web01
    mac: "52:54:00:5b:1a:cd"
    filter: clean-traffic
    parameters:
      IP: 192.168.122.50
      CTRL_IP_LEARNING: none

- name: Attach a filter with TCP rules, and refuse if the host would not enforce them
  secvirt.kvm.libvirt_nwfilter_binding:
    domain: web01
    mac: "52:54:00:5b:1a:cd"
    filter: mysecfilter
    parameters:
      IP: 192.168.122.50
    bridge_netfilter: fail

- name: Remove the filter from the interface attached as vnet3
  secvirt.kvm.libvirt_nwfilter_binding:
    domain: web01
    target_dev: vnet3
    state: absent
'''

RETURN = r'''
mac:
  description: MAC address of the interface.
  returned: always
  type: str
  sample: "52:54:00:5b:1a:cd"
target_dev:
  description: Host-side device of the interface of the running guest.
  returned: when the guest runs and O(live=true)
  type: str
  sample: vnet0
filterref:
  description: The C(<filterref>) element now wanted on the interface (empty when absent).
  returned: always
  type: str
config_changed:
  description: Whether the persistent definition changed (or would change).
  returned: always
  type: bool
live_changed:
  description: Whether the running guest's interface changed (or would change).
  returned: always
  type: bool
restart_required:
  description: The running guest still runs with the old filter; restart it to apply the new one.
  returned: always
  type: bool
bindings:
  description: libvirt's filter bindings for the interface's port device after the change.
  returned: when the guest runs (not in check mode)
  type: list
  elements: dict
  sample: [{portdev: vnet0, filter: clean-traffic}]
layer3_protocols:
  description:
    - The layer-3/4 (iptables/ip6tables) protocols used by the rules of the filter and of the filters it
      includes, sorted. Empty for filters such as C(clean-traffic) that use only ebtables protocols.
  returned: state=present
  type: list
  elements: str
  sample: [tcp]
layer3_rules_enforced:
  description:
    - Whether bridged guest traffic reaches the filter's layer-3/4 rules on this host. V(true) as well when the
      filter has none; null when libvirt runs on another host (not checked).
  returned: state=present
  type: bool
  sample: false
bridge_nf_call:
  description:
    - What was read on the host. C(br_netfilter) whether the module is loaded (C(/proc/sys/net/bridge) exists);
      C(iptables) and C(ip6tables) the values of C(net.bridge.bridge-nf-call-iptables) and
      C(bridge-nf-call-ip6tables) (null when absent); C(bridge) the interface's bridge when known, with its
      own C(nf_call_iptables) / C(nf_call_ip6tables) in C(bridge_iptables) / C(bridge_ip6tables).
    - Null when libvirt runs on another host.
  returned: state=present
  type: dict
  sample: {br_netfilter: false, iptables: null, ip6tables: null, bridge: br-web, bridge_iptables: 0,
           bridge_ip6tables: 0}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import run_libvirt_module, uri_argument_spec
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_nwfilter import run_binding
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_xml import XMLValidationError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **uri_argument_spec(),
            domain=dict(type='str', required=True),
            mac=dict(type='str'),
            target_dev=dict(type='str'),
            filter=dict(type='str'),
            parameters=dict(type='dict'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            live=dict(type='bool', default=True),
            bridge_netfilter=dict(type='str', default='warn', choices=['warn', 'fail', 'ignore']),
        ),
        required_one_of=[('mac', 'target_dev')],
        mutually_exclusive=[('mac', 'target_dev')],
        required_if=[('state', 'present', ('filter',))],
        supports_check_mode=True,
    )
    run_libvirt_module(module, lambda conn: run_binding(conn, module.params, check_mode=module.check_mode),
                       user_errors=(XMLValidationError,))


if __name__ == '__main__':
    main()
