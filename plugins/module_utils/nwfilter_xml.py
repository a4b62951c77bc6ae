# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Network filter XML for the secvirt.kvm libvirt modules.

Validation, construction and canonicalisation of ``<filter>`` definitions
(libvirt's nwfilter) and of the ``<filterref>`` of a guest's interfaces. Pure
XML like libvirt_xml.py, which explains the canonical form: here it makes
libvirt's defaults explicit (chain priority, rule priority 500, statematch)
and formats protocol values (MAC case, masks, ether types, IP protocols, TCP
flags ...) the way libvirt prints them.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import ipaddress
import re
import xml.etree.ElementTree as ET

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_xml import (
    XMLValidationError, _drop, canonical, domain_interfaces, interface_mac, normalize_mac, parse_xml)


NWFILTER_ACTIONS = ('drop', 'reject', 'accept', 'return', 'continue')
NWFILTER_DIRECTIONS = ('in', 'out', 'inout')
# libvirt's default priorities for the chain prefixes (nwfilter_conf.c)
NWFILTER_CHAIN_PRIORITIES = {
    'root': 0, 'stp': -810, 'mac': -800, 'vlan': -750, 'ipv4': -700,
    'ipv6': -600, 'arp': -500, 'rarp': -400,
}
NWFILTER_RULE_PRIORITY_DEFAULT = 500

_MAC_ATTRS = ('srcmacaddr', 'srcmacmask', 'dstmacaddr', 'dstmacmask')
_IP_COMMON = ('srcmacaddr', 'srcipaddr', 'srcipmask', 'dstipaddr', 'dstipmask',
              'srcipfrom', 'srcipto', 'dstipfrom', 'dstipto', 'dscp',
              'connlimit-above', 'state', 'ipset', 'ipsetflags', 'comment')
_PORTS = ('srcportstart', 'srcportend', 'dstportstart', 'dstportend')
_STP = ('srcmacaddr', 'srcmacmask', 'type', 'flags', 'root-priority', 'root-priority-hi',
        'root-address', 'root-address-mask', 'root-cost', 'root-cost-hi',
        'sender-priority', 'sender-priority-hi', 'sender-address', 'sender-address-mask',
        'port', 'port-hi', 'age', 'age-hi', 'max-age', 'max-age-hi', 'hello-time',
        'hello-time-hi', 'forward-delay', 'forward-delay-hi', 'comment')
_ARP = _MAC_ATTRS + ('hwtype', 'protocoltype', 'opcode', 'arpsrcmacaddr', 'arpdstmacaddr',
                     'arpsrcipaddr', 'arpsrcipmask', 'arpdstipaddr', 'arpdstipmask',
                     'gratuitous', 'comment')
_IPHDR = _MAC_ATTRS + ('srcipaddr', 'srcipmask', 'dstipaddr', 'dstipmask', 'protocol') + _PORTS

# Attributes libvirt 9 knows per protocol element. libvirt silently drops any
# other attribute, which would make the filter differ from the request forever.
NWFILTER_PROTOCOLS = {
    'mac': frozenset(_MAC_ATTRS + ('protocolid', 'comment')),
    'vlan': frozenset(_MAC_ATTRS + ('vlanid', 'encap-protocol', 'comment')),
    'stp': frozenset(_STP),
    'arp': frozenset(_ARP),
    'rarp': frozenset(_ARP),
    'ip': frozenset(_IPHDR + ('dscp', 'comment')),
    'ipv6': frozenset(_IPHDR + ('type', 'typeend', 'code', 'codeend', 'comment')),
    'tcp': frozenset(_IP_COMMON + _PORTS + ('option', 'flags')),
    'udp': frozenset(_IP_COMMON + _PORTS),
    'sctp': frozenset(_IP_COMMON + _PORTS),
    'udplite': frozenset(_IP_COMMON),
    'esp': frozenset(_IP_COMMON),
    'ah': frozenset(_IP_COMMON),
    'icmp': frozenset(_IP_COMMON + ('type', 'code')),
    'igmp': frozenset(_IP_COMMON),
    'all': frozenset(_IP_COMMON),
    'tcp-ipv6': frozenset(_IP_COMMON + _PORTS + ('option',)),
    'udp-ipv6': frozenset(_IP_COMMON + _PORTS),
    'sctp-ipv6': frozenset(_IP_COMMON + _PORTS),
    'udplite-ipv6': frozenset(_IP_COMMON),
    'esp-ipv6': frozenset(_IP_COMMON),
    'ah-ipv6': frozenset(_IP_COMMON),
    'icmpv6': frozenset(_IP_COMMON + ('type', 'code')),
    'all-ipv6': frozenset(_IP_COMMON),
}
# the protocol element may also carry match='yes|no' (negation)
_PROTOCOL_META = frozenset(['match'])

_ETHER_TYPES = {0x0806: 'arp', 0x8035: 'rarp', 0x0800: 'ipv4', 0x86dd: 'ipv6'}
_IP_PROTOCOLS = {6: 'tcp', 17: 'udp', 136: 'udplite', 50: 'esp', 51: 'ah', 1: 'icmp',
                 2: 'igmp', 132: 'sctp', 58: 'icmpv6'}
_TCP_FLAG_ORDER = ('FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG')
_STATE_ORDER = ('NEW', 'ESTABLISHED', 'RELATED', 'INVALID', 'NONE')
_NAME_RE = re.compile(r'^[A-Za-z0-9_.:-]+$')
_CHAIN_RE = re.compile(r'^[a-zA-Z0-9_.:-]{1,8}$')
_PARAM_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


def nwfilter_chain_default_priority(chain):
    """The priority libvirt assigns to a chain when none is given."""
    for prefix, prio in NWFILTER_CHAIN_PRIORITIES.items():
        if prefix != 'root' and chain.startswith(prefix):
            return prio
    return 0


def validate_nwfilter_name(name, what='filter name'):
    if not name or not _NAME_RE.match(name):
        raise XMLValidationError('%s %r is not valid (letters, digits, _ . : - only)' % (what, name))


def validate_nwfilter_chain(chain):
    if chain == 'root':
        return
    if not _CHAIN_RE.match(chain):
        raise XMLValidationError('chain %r is not valid (at most 8 characters of [a-zA-Z0-9_.:-])' % chain)
    prefixes = [p for p in NWFILTER_CHAIN_PRIORITIES if p != 'root']
    if chain.startswith('root') or not any(chain.startswith(p) for p in prefixes):
        raise XMLValidationError('chain %r is not valid: use root or a name starting with one of %s'
                                 % (chain, ', '.join(prefixes)))


def _int_in_range(value, low, high, what):
    try:
        number = int(str(value), 10)
    except (TypeError, ValueError):
        raise XMLValidationError('%s must be an integer, got %r' % (what, value))
    if not low <= number <= high:
        raise XMLValidationError('%s %d is outside [%d, %d]' % (what, number, low, high))
    return number


def validate_nwfilter(elem):
    """Refuse filter XML that libvirt would reject or silently change."""
    elem = parse_xml(elem, 'filter XML')
    if elem.tag != 'filter':
        raise XMLValidationError('the root element of a network filter must be <filter>, not <%s>' % elem.tag)
    validate_nwfilter_name(elem.get('name'))
    chain = elem.get('chain', 'root')
    validate_nwfilter_chain(chain)
    if elem.get('priority') is not None:
        _int_in_range(elem.get('priority'), -1000, 1000, 'filter priority')
    for child in elem:
        if child.tag == 'uuid':
            continue
        if child.tag == 'filterref':
            _validate_filterref(child)
        elif child.tag == 'rule':
            _validate_rule(child)
        else:
            raise XMLValidationError('unexpected element <%s> in filter %s (only <rule>, <filterref>, <uuid>)'
                                     % (child.tag, elem.get('name')))
    return elem


def _validate_filterref(ref):
    validate_nwfilter_name(ref.get('filter'), 'referenced filter name')
    for param in ref:
        if param.tag != 'parameter':
            raise XMLValidationError('unexpected element <%s> in <filterref>' % param.tag)
        if not _PARAM_NAME_RE.match(param.get('name') or ''):
            raise XMLValidationError('filter parameter name %r is not valid' % (param.get('name'),))
        if param.get('value') is None:
            raise XMLValidationError('filter parameter %s has no value' % param.get('name'))


def _validate_rule(rule):
    if rule.get('action') not in NWFILTER_ACTIONS:
        raise XMLValidationError('rule action %r is not one of %s' % (rule.get('action'), ', '.join(NWFILTER_ACTIONS)))
    if rule.get('direction') not in NWFILTER_DIRECTIONS:
        raise XMLValidationError('rule direction %r is not one of %s'
                                 % (rule.get('direction'), ', '.join(NWFILTER_DIRECTIONS)))
    if rule.get('priority') is not None:
        # libvirt silently replaces an out-of-range rule priority with 500
        _int_in_range(rule.get('priority'), -1000, 1000, 'rule priority')
    if rule.get('statematch') is not None and rule.get('statematch').lower() not in ('0', '1', 'true', 'false'):
        raise XMLValidationError('rule statematch must be true or false, got %r' % rule.get('statematch'))
    protocols = list(rule)
    if len(protocols) > 1:
        raise XMLValidationError('a rule matches one protocol, got %s' % ', '.join('<%s>' % p.tag for p in protocols))
    for proto in protocols:
        known = NWFILTER_PROTOCOLS.get(proto.tag)
        if known is None:
            raise XMLValidationError('unknown protocol <%s> (one of %s)' % (proto.tag, ', '.join(sorted(NWFILTER_PROTOCOLS))))
        unknown = sorted(set(proto.attrib) - known - _PROTOCOL_META)
        if unknown:
            raise XMLValidationError('protocol %s has no attribute(s) %s; libvirt would silently ignore them'
                                     % (proto.tag, ', '.join(unknown)))
        if proto.get('match') not in (None, 'yes', 'no'):
            raise XMLValidationError("match must be 'yes' or 'no'")
        if proto.tag in ('ip', 'ipv6') and any(proto.get(p) is not None for p in _PORTS):
            proto_id = _canonical_ip_protocol(proto.get('protocol') or '')
            if proto_id not in ('tcp', 'udp', 'sctp', '33') and not proto_id.startswith('$'):
                raise XMLValidationError('a port match in <%s> needs protocol tcp, udp, dccp or sctp' % proto.tag)


def build_nwfilter(name, chain=None, priority=None, rules=None, filterrefs=None, uuid=None):
    """Structured options -> <filter> Element (validated).

    rules: list of dicts with action, direction, priority, statematch,
    protocol, match (dict of protocol attributes), negate (bool).
    filterrefs: list of dicts with filter and parameters (dict of str or list).
    Filter references are rendered after the rules, as in the libvirt examples.
    """
    root = ET.Element('filter', {'name': name})
    if chain:
        root.set('chain', chain)
    if priority is not None:
        root.set('priority', str(priority))
    if uuid:
        ET.SubElement(root, 'uuid').text = uuid
    for index, rule in enumerate(rules or []):
        root.append(_build_rule(rule, index))
    for ref in filterrefs or []:
        if not isinstance(ref, dict) or not ref.get('filter'):
            raise XMLValidationError('every filterref needs a filter name')
        root.append(filterref_element(ref['filter'], ref.get('parameters')))
    validate_nwfilter(root)
    return root


def _xml_value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def _build_rule(rule, index):
    if not isinstance(rule, dict):
        raise XMLValidationError('rule #%d must be a dictionary' % (index + 1))
    elem = ET.Element('rule')
    for key in ('action', 'direction'):
        if rule.get(key) is None:
            raise XMLValidationError('rule #%d has no %s' % (index + 1, key))
        elem.set(key, str(rule[key]))
    if rule.get('priority') is not None:
        elem.set('priority', str(rule['priority']))
    if rule.get('statematch') is not None:
        elem.set('statematch', _xml_value(rule['statematch']))
    protocol = rule.get('protocol')
    match = rule.get('match') or {}
    if match and not protocol:
        raise XMLValidationError('rule #%d has match attributes but no protocol' % (index + 1))
    if protocol:
        proto = ET.SubElement(elem, protocol)
        for key, value in match.items():
            if value is not None:
                proto.set(str(key), _xml_value(value))
        if rule.get('negate'):
            proto.set('match', 'no')
    return elem


def filterref_element(filter_name, parameters=None):
    """<filterref filter=...> with <parameter> children (lists become repeats)."""
    validate_nwfilter_name(filter_name, 'referenced filter name')
    ref = ET.Element('filterref', {'filter': filter_name})
    for name in sorted(parameters or {}):
        values = parameters[name]
        if not isinstance(values, (list, tuple)):
            values = [values]
        if not values:
            raise XMLValidationError('filter parameter %s has no value' % name)
        for value in values:
            if value is None:
                raise XMLValidationError('filter parameter %s has no value' % name)
            ET.SubElement(ref, 'parameter', {'name': str(name), 'value': _xml_value(value)})
    _validate_filterref(ref)
    return ref


def filterref_parameters(ref):
    """{name: [values]} of a <filterref> (or {} for None)."""
    params = {}
    if ref is None:
        return params
    for param in ref.findall('parameter'):
        params.setdefault(param.get('name'), []).append(param.get('value'))
    return params


def _canonical_number(value):
    if re.match(r'^0[xX][0-9a-fA-F]+$', value):
        return value.lower()
    if re.match(r'^[0-9]+$', value):
        return str(int(value))
    return value


def _canonical_mask(value, v6=False):
    """A dotted or colon netmask -> prefix length, as libvirt prints masks."""
    if re.match(r'^[0-9]+$', value):
        return str(int(value))
    try:
        bits = int(ipaddress.ip_address(u'%s' % value))
    except ValueError:
        return value
    width = 128 if v6 else 32
    binary = bin(bits)[2:].zfill(width)
    if '01' in binary:  # not a contiguous mask: leave it for libvirt to refuse
        return value
    return str(binary.count('1'))


def _canonical_ip(value):
    try:
        return str(ipaddress.ip_address(u'%s' % value))
    except ValueError:
        return value


def _canonical_ether_type(value):
    try:
        number = int(value, 0)
    except ValueError:
        return value.lower()
    return _ETHER_TYPES.get(number, '0x%x' % number)


def _canonical_ip_protocol(value):
    if value.isdigit():
        return _IP_PROTOCOLS.get(int(value), str(int(value)))
    if value.lower().startswith('0x'):
        try:
            number = int(value, 16)
        except ValueError:
            return value
        return _IP_PROTOCOLS.get(number, str(number))
    return value.lower()


def _canonical_flag_list(value, order, all_value=None):
    items = [v.strip().upper() for v in value.split(',') if v.strip()]
    known = [f for f in order if f in items]
    if all_value and set(order) <= set(items):
        return all_value
    return ','.join(known + sorted(set(items) - set(order)))


def _canonical_tcp_flags(value):
    if '/' not in value:
        return value
    parts = []
    for part in value.split('/', 1):
        items = [v.strip().upper() for v in part.split(',')]
        if 'ALL' in items:
            parts.append('ALL')
            continue
        known = [f for f in _TCP_FLAG_ORDER if f in items]
        parts.append(','.join(known) if known else 'NONE')
    return '/'.join(parts)


def _canonical_protocol_attr(proto_tag, name, value):
    if value.startswith('$'):
        return value
    v6 = proto_tag.endswith('ipv6') or proto_tag == 'icmpv6'
    if name.endswith('macaddr') or name.endswith('macmask') or name in (
            'root-address', 'root-address-mask', 'sender-address', 'sender-address-mask'):
        try:
            return normalize_mac(value)
        except XMLValidationError:
            return value
    if name.endswith('ipmask'):
        return _canonical_mask(value, v6)
    if name.endswith('ipaddr') or name in ('srcipfrom', 'srcipto', 'dstipfrom', 'dstipto'):
        return _canonical_ip(value)
    if name in ('protocolid', 'encap-protocol'):
        return _canonical_ether_type(value)
    if name == 'protocol':
        return _canonical_ip_protocol(value)
    if name == 'gratuitous':
        return 'true' if value.lower() in ('true', 'yes', '1') else 'false'
    if name == 'state':
        return _canonical_flag_list(value, _STATE_ORDER)
    if name == 'flags' and proto_tag in ('tcp',):
        return _canonical_tcp_flags(value)
    if name in ('ipsetflags',):
        return value.lower()
    if name in ('comment', 'ipset', 'opcode'):
        return value
    return _canonical_number(value)


def canonical_nwfilter(elem):
    """Canonical string of a <filter>: libvirt's defaults made explicit,
    uuid dropped, values normalised the way libvirt formats them."""
    elem = parse_xml(elem, 'filter XML')
    _drop(elem, {'uuid'})
    chain = elem.get('chain') or 'root'
    elem.set('chain', chain)
    priority = elem.get('priority')
    if priority is None:
        priority = nwfilter_chain_default_priority(chain)
    if int(priority) == 0:
        elem.attrib.pop('priority', None)
    else:
        elem.set('priority', str(int(priority)))
    for rule in elem.findall('rule'):
        prio = rule.get('priority')
        try:
            prio = int(prio) if prio is not None else NWFILTER_RULE_PRIORITY_DEFAULT
        except ValueError:
            prio = NWFILTER_RULE_PRIORITY_DEFAULT
        if not -1000 <= prio <= 1000:
            prio = NWFILTER_RULE_PRIORITY_DEFAULT
        rule.set('priority', str(prio))
        statematch = (rule.get('statematch') or 'true').lower()
        if statematch in ('0', 'false'):
            rule.set('statematch', 'false')
        else:
            rule.attrib.pop('statematch', None)
        for proto in rule:
            if proto.get('match') == 'yes':
                del proto.attrib['match']
            for name in list(proto.attrib):
                if name != 'match':
                    proto.set(name, _canonical_protocol_attr(proto.tag, name, proto.get(name)))
    for ref in elem.findall('filterref'):
        _canonical_filterref_inplace(ref)
    return canonical(elem)


def _canonical_filterref_inplace(ref):
    params = list(ref.findall('parameter'))
    for param in params:
        ref.remove(param)
    # libvirt keeps parameters in a hash table and prints them sorted by name;
    # values of one (list) parameter keep their order
    params.sort(key=lambda p: p.get('name') or '')
    for param in params:
        ref.append(param)


def canonical_filterref(ref):
    """Canonical string of an interface's <filterref> ('' when there is none)."""
    if ref is None:
        return ''
    ref = copy.deepcopy(ref)
    _canonical_filterref_inplace(ref)
    return canonical(ref)


def nwfilter_references(elem):
    """Names of the filters that a <filter> includes."""
    elem = parse_xml(elem, 'filter XML')
    return [ref.get('filter') for ref in elem.findall('filterref')]


def nwfilter_summary(elem):
    """A short dictionary describing a <filter> (for state=list)."""
    elem = parse_xml(elem, 'filter XML')
    chain = elem.get('chain') or 'root'
    priority = elem.get('priority')
    return {
        'name': elem.get('name'),
        'uuid': (elem.findtext('uuid') or '').strip() or None,
        'chain': chain,
        'priority': int(priority) if priority is not None else nwfilter_chain_default_priority(chain),
        'rules': len(elem.findall('rule')),
        'filterrefs': nwfilter_references(elem),
    }


# --------------------------------------------------------------------------
# filter references of a domain's interfaces
# --------------------------------------------------------------------------

def set_interface_filterref(iface, ref):
    """Replace (or with ref=None remove) the <filterref> of an <interface>.
    Returns the modified interface (same object)."""
    old = iface.find('filterref')
    position = None
    if old is not None:
        position = list(iface).index(old)
        iface.remove(old)
    if ref is not None:
        ref = copy.deepcopy(ref)
        if position is None:
            iface.append(ref)
        else:
            iface.insert(position, ref)
    return iface


def domain_filter_references(domain):
    """[(mac, filter name)] for every interface of a <domain> with a filterref."""
    refs = []
    for iface in domain_interfaces(domain):
        ref = iface.find('filterref')
        if ref is not None:
            refs.append((interface_mac(iface), ref.get('filter')))
    return refs
