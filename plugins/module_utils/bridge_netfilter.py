# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Whether the layer-3/4 rules of a libvirt network filter are in force.

libvirt's nwfilter driver implements the layer-2 protocols of a filter (mac,
vlan, stp, arp, rarp, ip, ipv6 and rules without a protocol) with ebtables,
and the layer-3/4 protocols (tcp, udp, icmp, all, ... and their -ipv6
variants) with iptables/ip6tables rules that match the guest's bridge port
(``-m physdev``). Frames crossing a Linux bridge only reach iptables when
br_netfilter is loaded and net.bridge.bridge-nf-call-iptables (ip6tables for
the IPv6 protocols) is 1, globally or for the bridge itself; otherwise those
rules are instantiated but never see the guest's traffic.

Plain Python: filters are read through a lookup callable and the host's state
below a root directory, so that the unit tests can use fakes for both.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import nwfilter_xml as nfx

# libvirt's protocol elements by the tool that implements them
# (src/nwfilter/nwfilter_ebiptables_driver.c)
EBTABLES_PROTOCOLS = frozenset(['mac', 'vlan', 'stp', 'arp', 'rarp', 'ip', 'ipv6'])
IPTABLES_PROTOCOLS = frozenset(['tcp', 'udp', 'udplite', 'sctp', 'icmp', 'igmp', 'esp', 'ah', 'all'])
IP6TABLES_PROTOCOLS = frozenset(['tcp-ipv6', 'udp-ipv6', 'udplite-ipv6', 'sctp-ipv6', 'icmpv6', 'esp-ipv6',
                                 'ah-ipv6', 'all-ipv6'])
FAMILIES = ('iptables', 'ip6tables')
MODES = ('warn', 'fail', 'ignore')

# the directory the host's /proc and /sys are read below; the unit tests
# point it at a temporary directory
PROC_ROOT = '/'
_SYSCTL_DIR = 'proc/sys/net/bridge'
_LOCAL_HOSTS = ('', 'localhost', 'localhost.localdomain', '127.0.0.1', '::1', '[::1]')


def protocol_family(protocol):
    """'iptables' or 'ip6tables' for a layer-3/4 protocol element, None otherwise."""
    if protocol in IPTABLES_PROTOCOLS:
        return 'iptables'
    if protocol in IP6TABLES_PROTOCOLS:
        return 'ip6tables'
    return None


def sysctl_name(family):
    return 'net.bridge.bridge-nf-call-%s' % family


def sysctl_path(family):
    """The sysctl's file as the operator knows it (not below a test root)."""
    return '/%s/bridge-nf-call-%s' % (_SYSCTL_DIR, family)


def own_layer3_protocols(elem):
    """Sorted layer-3/4 protocols of the rules of one <filter> (its references not followed)."""
    elem = lx.parse_xml(elem, 'filter XML')
    found = set()
    for rule in elem.findall('rule'):
        for proto in rule:
            if protocol_family(proto.tag):
                found.add(proto.tag)
    return sorted(found)


def resolve_layer3(name, lookup, xml=None):
    """The layer-3/4 protocols of filter ``name`` and of every filter it includes.

    ``lookup(name)`` returns a filter's XML text, or None when it is not
    defined; any other failure must raise (it is not taken for "no rules").
    ``xml`` gives the XML of ``name`` itself (a filter about to be defined).
    Each filter is read once, so reference loops end. Returns
    ``{'protocols': [...], 'where': {filter: [...]}, 'missing': [...]}``.
    """
    protocols, where, missing = set(), {}, []
    seen = set()
    pending = [(name, xml)]
    while pending:
        current, text = pending.pop(0)
        if current in seen:
            continue
        seen.add(current)
        if text is None:
            text = lookup(current)
        if text is None:
            missing.append(current)
            continue
        elem = lx.parse_xml(text, 'filter %s' % current)
        own = own_layer3_protocols(elem)
        if own:
            where[current] = own
            protocols.update(own)
        pending.extend((ref, None) for ref in nfx.nwfilter_references(elem) if ref and ref not in seen)
    return {'protocols': sorted(protocols), 'where': where, 'missing': missing}


def _read_int(path):
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (IOError, OSError, ValueError):
        return None


def _safe_bridge(bridge):
    if not bridge or '/' in bridge or bridge in ('.', '..'):
        return None
    return bridge


def read_bridge_nf(root=None, bridge=None):
    """Whether bridged frames reach iptables/ip6tables on this host.

    br_netfilter registers /proc/sys/net/bridge when it is loaded: without it
    no bridged frame reaches iptables, whatever else is set. With it, a
    bridge's frames do when the global sysctl or the bridge's own
    nf_call_iptables (/sys/class/net/BRIDGE/bridge/) is non-zero.
    Values are integers, None when the file is missing or unreadable.
    """
    root = root or PROC_ROOT
    base = os.path.join(root, _SYSCTL_DIR)
    bridge = _safe_bridge(bridge)
    state = {'br_netfilter': os.path.isdir(base), 'bridge': bridge}
    for family in FAMILIES:
        state[family] = _read_int(os.path.join(base, 'bridge-nf-call-' + family))
        state['bridge_' + family] = (_read_int(os.path.join(root, 'sys/class/net', bridge, 'bridge',
                                                            'nf_call_' + family)) if bridge else None)
    return state


def family_enforced(state, family):
    """Whether bridged frames pass the ``family`` (iptables/ip6tables) hooks."""
    return bool(state['br_netfilter']) and bool(state[family] or state['bridge_' + family])


def uri_is_local(uri):
    """Whether a libvirt URI is served on this host (so that its /proc is ours)."""
    if not uri or '://' not in uri:
        return True
    netloc = uri.split('://', 1)[1].split('/', 1)[0]
    host = netloc.rsplit('@', 1)[-1]
    if not host.startswith('['):
        host = host.split(':', 1)[0]
    elif ']' in host:
        host = host[:host.index(']') + 1]
    return host.lower() in _LOCAL_HOSTS


def _listing(protocols, where):
    """'tcp, udp (in filter f)' or 'tcp, udp (tcp in filter f; udp in filter g)'."""
    places = [(fname, [p for p in protos if p in protocols]) for fname, protos in sorted(where.items())]
    places = [(fname, protos) for fname, protos in places if protos]
    if len(places) == 1:
        return '%s (in filter %s)' % (', '.join(protocols), places[0][0])
    return '%s (%s)' % (', '.join(protocols),
                        '; '.join('%s in filter %s' % (', '.join(protos), fname) for fname, protos in places))


def _why(state, family):
    if not state['br_netfilter']:
        return 'br_netfilter is not loaded (%s does not exist)' % sysctl_path(family)
    value = state[family]
    why = '%s is %s' % (sysctl_name(family), 'unreadable' if value is None else value)
    if state['bridge']:
        bvalue = state['bridge_' + family]
        why += ' and nf_call_%s of bridge %s is %s' % (family, state['bridge'],
                                                       'unset' if bvalue is None else bvalue)
    return why


def assess(name, found, state):
    """Facts and, when rules are not in force, the message for filter ``name``.

    ``found`` is what resolve_layer3() returned, ``state`` what
    read_bridge_nf() returned, or None when the host cannot be read (a remote
    libvirt URI). ``layer3_rules_enforced`` is True when the filter has no
    layer-3/4 rules or all of them see bridged traffic, None when unknown.
    """
    protocols = found['protocols']
    result = {'layer3_protocols': protocols, 'layer3_rules_enforced': True, 'message': None}
    if not protocols:
        return result
    by_family = {}
    for proto in protocols:
        by_family.setdefault(protocol_family(proto), []).append(proto)
    if state is None:
        result['layer3_rules_enforced'] = None
        result['message'] = (
            'network filter %s has layer-3/4 rules %s that libvirt implements with %s. Whether they are in force '
            'cannot be checked from here (libvirt runs on a remote host): they only see bridged guest traffic '
            'there with br_netfilter loaded and %s=1.'
            % (name, _listing(protocols, found['where']), '/'.join(sorted(by_family)),
               ' and '.join(sysctl_name(f) for f in sorted(by_family))))
        return result
    parts = []
    for family in FAMILIES:
        if family in by_family and not family_enforced(state, family):
            parts.append('its %s rules for %s are implemented with %s, which bridged guest traffic passes only with '
                         'br_netfilter loaded and %s=1, but %s'
                         % ('IPv6' if family == 'ip6tables' else 'IPv4', _listing(by_family[family], found['where']),
                            family, sysctl_name(family), _why(state, family)))
    if not parts:
        return result
    result['layer3_rules_enforced'] = False
    result['message'] = (
        'network filter %s: %s. These rules are not enforced (the filter\'s ebtables rules, for %s and rules '
        'without a protocol, are). Enable bridge-nf-call-iptables/ip6tables (globally, or with nf_call_iptables '
        'on the bridge), match with the ebtables protocols ip/ipv6 instead, or set bridge_netfilter=ignore to '
        'accept this.' % (name, '; '.join(parts), ', '.join(sorted(EBTABLES_PROTOCOLS))))
    return result


def judge(name, found, uri=None, bridge=None, root=None):
    """Judge the resolved filter ``name`` against the host as it is now.

    Returns (facts, message): facts for the module result (layer3_protocols,
    layer3_rules_enforced, bridge_nf_call) and the text to warn or fail with,
    None when the rules are in force (or there are none).
    """
    state = read_bridge_nf(root, bridge=bridge) if uri_is_local(uri) else None
    judged = assess(name, found, state)
    facts = {'layer3_protocols': judged['layer3_protocols'],
             'layer3_rules_enforced': judged['layer3_rules_enforced'],
             'bridge_nf_call': state}
    return facts, judged['message']
