#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: libvirt_nwfilter
short_description: Define, update and undefine libvirt network filters
version_added: 0.1.0
description:
  - Manages libvirt network filters (C(virsh nwfilter-define), C(nwfilter-undefine)),
    the ebtables/iptables/ip6tables rule sets that libvirt applies to the interfaces of guests
    which reference them.
  - The filter is given either as raw XML (O(xml)) or with structured options (O(chain), O(priority),
    O(rules), O(filterrefs)).
  - The module is idempotent. The defined filter and the wanted one are compared in a canonical form that ignores the
    uuid, attribute order, whitespace and the defaults libvirt adds (rule priority 500, chain priorities,
    C(match='yes'), MAC address case, dotted versus CIDR masks).
  - Protocol attributes are checked against the ones libvirt knows, because libvirt silently drops
    unknown attributes.
  - Refuses to undefine a filter that another filter or a guest (persistent or running definition)
    references, unless O(force=true).
  - With O(state=present) it reports whether the filter's layer-3/4 rules (C(tcp), C(udp), C(icmp), C(all),
    and the C(-ipv6) ones, also those of included filters) can be in force on this host. libvirt
    implements them with iptables/ip6tables, which bridged guest traffic passes only with C(br_netfilter)
    loaded and C(net.bridge.bridge-nf-call-iptables) (C(bridge-nf-call-ip6tables)) set to 1. See
    O(bridge_netfilter).
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.libvirt
author:
  - secvirt.kvm contributors (@secvirt)
options:
  name:
    description:
      - Name of the filter. Required unless O(xml) carries a C(name) attribute.
    type: str
  state:
    description:
      - V(present) defines or updates the filter, V(absent) undefines it.
      - To list filters and the bindings of running guests use M(secvirt.kvm.libvirt_nwfilter_info).
    type: str
    choices: [present, absent]
    default: present
  xml:
    description:
      - Complete C(<filter>) XML. Mutually exclusive with the structured options.
    type: str
  chain:
    description:
      - Chain the filter's rules go into, V(root) or a name starting with V(mac), V(vlan), V(stp),
        V(arp), V(rarp), V(ipv4) or V(ipv6). libvirt defaults to V(root).
    type: str
  priority:
    description:
      - Priority of the filter's chain (-1000 to 1000); libvirt picks a default per chain.
    type: int
  rules:
    description:
      - Rules, in order.
    type: list
    elements: dict
    suboptions:
      action:
        description: What to do with a matching packet.
        type: str
        required: true
        choices: [drop, reject, accept, return, continue]
      direction:
        description: V(out) is traffic from the guest, V(in) traffic to the guest.
        type: str
        required: true
        choices: [in, out, inout]
      priority:
        description: Order among rules (-1000 to 1000, lower first); libvirt uses 500 when unset.
        type: int
      statematch:
        description: Set V(false) to disable connection-state matching of iptables rules.
        type: bool
      protocol:
        description:
          - Protocol element of the rule, for example V(mac), V(arp), V(ip), V(ipv6), V(tcp), V(udp),
            V(icmp), V(all), V(tcp-ipv6).
        type: str
      match:
        description:
          - Attributes of the protocol element, for example C(dstportstart=25) and C(dstportend=25),
            or C(srcmacaddr=$MAC).
        type: dict
      negate:
        description: Negate the match (C(match='no')).
        type: bool
        default: false
  filterrefs:
    description:
      - Other filters to include, after the rules.
    type: list
    elements: dict
    suboptions:
      filter:
        description: Name of the included filter.
        type: str
        required: true
      parameters:
        description: Parameters passed to it; a list value repeats the parameter.
        type: dict
  force:
    description:
      - With O(state=absent), undefine even if filters or guests still reference the filter.
      - libvirt itself still refuses while a running guest uses it.
    type: bool
    default: false
  bridge_netfilter:
    description:
      - What to do, with O(state=present), when the filter (or a filter it includes) has layer-3/4 rules and
        C(br_netfilter) is not loaded or C(net.bridge.bridge-nf-call-iptables) / C(bridge-nf-call-ip6tables)
        is 0 on this host, so that the rules would not see bridged guest traffic.
      - V(warn) defines the filter and warns, V(fail) refuses before defining it, V(ignore) says nothing.
      - The filter is not bound to an interface here, so a bridge's own C(nf_call_iptables) is not looked at;
        M(secvirt.kvm.libvirt_nwfilter_binding) does.
    type: str
    choices: [warn, fail, ignore]
    default: warn
notes:
  - Needs the libvirt nwfilter driver (C(libvirtd) or C(virtnwfilterd)) and, to instantiate filters,
    ebtables and iptables on the host.
seealso:
  - module: secvirt.kvm.libvirt_nwfilter_info
  - module: secvirt.kvm.libvirt_nwfilter_binding
  - name: libvirt network filters
    description: XML format and the protocol attributes.
    link: https://libvirt.org/formatnwfilter.html
'''

EXAMPLES = r'''
- name: Drop outbound SMTP and inbound telnet, on top of clean-traffic
  secvirt.kvm.libvirt_nwfilter:
    name: mysecfilter
    chain: root
    rules:
      - action: drop
        direction: out
        priority: 500
        protocol: tcp
        match:
          dstportstart: 25
          dstportend: 25
      - action: drop
        direction: in
        priority: 500
        protocol: tcp
        match:
          dstportstart: 23
          dstportend: 23
    filterrefs:
      - filter: clean-traffic

- name: Define a filter from XML
  secvirt.kvm.libvirt_nwfilter:
    xml: "{{ lookup('ansible.builtin.file', 'no-smtp.xml') }}"

- name: Remove a filter that guests may still reference
  secvirt.kvm.libvirt_nwfilter:
    name: oldfilter
    state: absent
    force: true
'''

RETURN = r'''
xml:
  description: The filter XML as libvirt stores it (after the change; the wanted XML in check mode).
  returned: state=present
  type: str
referenced_by:
  description: Filters and guests that reference the filter.
  returned: state=absent and the filter exists
  type: dict
  sample: {filters: [], guests: [web01]}
layer3_protocols:
  description: The layer-3/4 (iptables/ip6tables) protocols used by the filter and the filters it includes.
  returned: state=present
  type: list
  elements: str
  sample: [tcp]
layer3_rules_enforced:
  description:
    - Whether bridged guest traffic reaches those rules on this host (V(true) when there are none, null when
      libvirt runs on another host).
  returned: state=present
  type: bool
bridge_nf_call:
  description: What was read on the host, as in M(secvirt.kvm.libvirt_nwfilter_binding).
  returned: state=present
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import run_libvirt_module, uri_argument_spec
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_nwfilter import run_nwfilter
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_xml import XMLValidationError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **uri_argument_spec(),
            name=dict(type='str'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            xml=dict(type='str'),
            chain=dict(type='str'),
            priority=dict(type='int'),
            rules=dict(type='list', elements='dict', options=dict(
                action=dict(type='str', required=True, choices=['drop', 'reject', 'accept', 'return', 'continue']),
                direction=dict(type='str', required=True, choices=['in', 'out', 'inout']),
                priority=dict(type='int'),
                statematch=dict(type='bool'),
                protocol=dict(type='str'),
                match=dict(type='dict'),
                negate=dict(type='bool', default=False),
            )),
            filterrefs=dict(type='list', elements='dict', options=dict(
                filter=dict(type='str', required=True),
                parameters=dict(type='dict'),
            )),
            force=dict(type='bool', default=False),
            bridge_netfilter=dict(type='str', default='warn', choices=['warn', 'fail', 'ignore']),
        ),
        mutually_exclusive=[('xml', 'chain'), ('xml', 'priority'), ('xml', 'rules'), ('xml', 'filterrefs')],
        supports_check_mode=True,
    )
    run_libvirt_module(module, lambda conn: run_nwfilter(conn, module.params, check_mode=module.check_mode),
                       user_errors=(XMLValidationError,))


if __name__ == '__main__':
    main()
