# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Pure XML helpers for the secvirt.kvm libvirt modules.

Nothing here talks to libvirt: these functions parse, validate, build and
canonicalise the XML that the modules hand to (or read from) the daemon, so
that they can be unit-tested without a hypervisor.

Canonical form: the modules decide "changed" by comparing a canonical string of
what is defined with what is wanted. Canonicalisation drops what libvirt adds or
rewrites on its own (the ``uuid``, the default chain priority of a filter, the
default rule priority 500, ``relabel`` defaults, unit conversions, the case of
MAC addresses, dotted versus CIDR masks ...), ignores attribute order and
whitespace, and keeps everything that changes behaviour.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import difflib
import io
import ipaddress
import re
import xml.etree.ElementTree as ET


class XMLValidationError(ValueError):
    """Input XML or structured options that libvirt would reject or mangle."""


# --------------------------------------------------------------------------
# generic helpers
# --------------------------------------------------------------------------

def parse_xml(text, what='XML'):
    """Parse a string into an Element; refuse DTDs (entity expansion)."""
    if isinstance(text, ET.Element):
        return copy.deepcopy(text)
    if not isinstance(text, str) or not text.strip():
        raise XMLValidationError('%s is empty' % what)
    if re.search(r'<!(DOCTYPE|ENTITY)', text, re.IGNORECASE):
        raise XMLValidationError('%s must not contain a DOCTYPE or ENTITY declaration' % what)
    try:
        elem = ET.fromstring(text)
    except ET.ParseError as exc:
        raise XMLValidationError('%s is not well-formed: %s' % (what, exc))
    if 'xmlns:' in text:
        _register_namespaces(text)
    return elem


def _register_namespaces(text):
    """Keep the document's prefixes (qemu:, libosinfo: ...) when serialising
    a definition back, instead of ElementTree's ns0:, ns1:."""
    for _event, (prefix, uri) in ET.iterparse(io.StringIO(text), events=('start-ns',)):
        if prefix and not re.match(r'^ns[0-9]+$', prefix):
            ET.register_namespace(prefix, uri)


def indent(elem, level=0, step='  '):
    """Pretty-print in place (ET.indent exists only from Python 3.9)."""
    pad = '\n' + level * step
    if len(elem):
        if not (elem.text or '').strip():
            elem.text = pad + step
        for child in elem:
            indent(child, level + 1, step)
        # the last child closes the parent at the parent's level
        if not (child.tail or '').strip():
            child.tail = pad
    if level and not (elem.tail or '').strip():
        elem.tail = pad
    return elem


def to_string(elem, pretty=True):
    """Serialise an Element (a copy is pretty-printed, the input is untouched)."""
    elem = copy.deepcopy(elem)
    if pretty:
        _strip_whitespace(elem)
        indent(elem)
    return ET.tostring(elem, encoding='unicode')


def _strip_whitespace(elem):
    for node in elem.iter():
        if node.text is not None and not node.text.strip():
            node.text = None
        elif node.text is not None:
            node.text = node.text.strip()
        if node.tail is not None:
            node.tail = None


def _sort_attributes(elem):
    for node in elem.iter():
        items = sorted(node.attrib.items())
        node.attrib.clear()
        for key, value in items:
            node.set(key, value)


def _drop(elem, tags):
    for parent in list(elem.iter()):
        for child in list(parent):
            if child.tag in tags:
                parent.remove(child)


def canonical(elem, drop=('uuid',)):
    """Canonical string of any XML: no ``drop`` elements, sorted attributes,
    no insignificant whitespace. Element order is kept (it matters in libvirt)."""
    elem = parse_xml(elem)
    _drop(elem, set(drop))
    _strip_whitespace(elem)
    _sort_attributes(elem)
    return ET.tostring(elem, encoding='unicode')


def xml_equal(first, second, drop=('uuid',)):
    return canonical(first, drop) == canonical(second, drop)


def unified_diff(before, after, fromfile='before', tofile='after'):
    """A unified diff of two texts (empty string when equal)."""
    lines = difflib.unified_diff((before or '').splitlines(True), (after or '').splitlines(True),
                                 fromfile=fromfile, tofile=tofile)
    return ''.join(lines)


def diff_dict(before, after, before_header=None, after_header=None):
    """The ``diff`` return value Ansible renders with --diff."""
    result = {'before': before or '', 'after': after or ''}
    if before and not before.endswith('\n'):
        result['before'] += '\n'
    if after and not after.endswith('\n'):
        result['after'] += '\n'
    if before_header:
        result['before_header'] = before_header
    if after_header:
        result['after_header'] = after_header
    return result


def normalize_mac(mac):
    """``52:54:0:AB:cd:1`` -> ``52:54:00:ab:cd:01``; raise on garbage."""
    parts = re.split(r'[:-]', str(mac).strip())
    if len(parts) != 6 or not all(re.match(r'^[0-9a-fA-F]{1,2}$', p) for p in parts):
        raise XMLValidationError('invalid MAC address %r' % (mac,))
    return ':'.join('%02x' % int(p, 16) for p in parts)


# --------------------------------------------------------------------------
# network filters
# --------------------------------------------------------------------------

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
# domain interfaces and filter bindings
# --------------------------------------------------------------------------

def domain_interfaces(domain):
    """The <interface> elements of a <domain>."""
    domain = parse_xml(domain, 'domain XML') if not isinstance(domain, ET.Element) else domain
    devices = domain.find('devices')
    return [] if devices is None else devices.findall('interface')


def interface_mac(iface):
    mac = iface.find('mac')
    return normalize_mac(mac.get('address')) if mac is not None and mac.get('address') else None


def interface_target(iface):
    target = iface.find('target')
    return target.get('dev') if target is not None else None


def find_interface(domain, mac=None, target_dev=None):
    """The <interface> with this MAC (preferred) or target device, or None."""
    wanted_mac = normalize_mac(mac) if mac else None
    for iface in domain_interfaces(domain):
        if wanted_mac and interface_mac(iface) == wanted_mac:
            return iface
        if not wanted_mac and target_dev and interface_target(iface) == target_dev:
            return iface
    return None


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


# --------------------------------------------------------------------------
# security labels (sVirt)
# --------------------------------------------------------------------------

SECLABEL_TYPES = ('dynamic', 'static', 'none')
SECLABEL_MODELS = ('selinux', 'apparmor', 'dac')
MCS_MAX_CATEGORY = 1023
_SELINUX_PART_RE = re.compile(r'^[A-Za-z0-9_.]+$')
_SENSITIVITY_RE = re.compile(r'^s([0-9]|1[0-5])$')
_CATEGORY_RE = re.compile(r'^c([0-9]+)$')
_DAC_PART_RE = re.compile(r'^(\+[0-9]+|[A-Za-z_][A-Za-z0-9_.-]*\$?)$')
_APPARMOR_RE = re.compile(r'^[A-Za-z0-9_.:/+-]+$')


def parse_selinux_context(label):
    """'user:role:type:level' -> (user, role, type, level); validates syntax."""
    if not isinstance(label, str) or label.count(':') < 3:
        raise XMLValidationError('SELinux label %r must be user:role:type:level, e.g. '
                                 'system_u:system_r:svirt_t:s0:c10,c20' % (label,))
    user, role, type_, level = label.split(':', 3)
    for what, part in (('user', user), ('role', role), ('type', type_)):
        if not _SELINUX_PART_RE.match(part):
            raise XMLValidationError('SELinux label %r has an invalid %s %r' % (label, what, part))
    parse_mls_range(level, label)
    return user, role, type_, level


def parse_mls_range(level, label=None):
    """'s0', 's0:c1,c2', 's0-s0:c0.c1023' -> [(sensitivity, categories)]."""
    result = []
    parts = level.split('-')
    if len(parts) > 2:
        raise XMLValidationError('SELinux level %r of %r has more than one range' % (level, label or level))
    for part in parts:
        result.append(_parse_mls_level(part, label or level))
    return result


def _parse_mls_level(level, label):
    sens, _sep, cats = level.partition(':')
    if not _SENSITIVITY_RE.match(sens):
        raise XMLValidationError('SELinux level %r of %r: sensitivity must be s0..s15' % (level, label))
    categories = set()
    if _sep and not cats:
        raise XMLValidationError('SELinux level %r of %r has an empty category list' % (level, label))
    for item in cats.split(',') if cats else []:
        ends = item.split('.')
        if len(ends) > 2:
            raise XMLValidationError('SELinux category %r of %r is not cN or cN.cM' % (item, label))
        numbers = []
        for end in ends:
            match = _CATEGORY_RE.match(end)
            if not match:
                raise XMLValidationError('SELinux category %r of %r is not cN or cN.cM' % (item, label))
            number = int(match.group(1))
            if number > MCS_MAX_CATEGORY:
                raise XMLValidationError('SELinux category c%d of %r is outside c0..c%d'
                                         % (number, label, MCS_MAX_CATEGORY))
            numbers.append(number)
        if len(numbers) == 2 and numbers[0] >= numbers[1]:
            raise XMLValidationError('SELinux category range %r of %r must go upwards' % (item, label))
        categories.update(range(numbers[0], numbers[-1] + 1))
    return sens, frozenset(categories)


def mcs_pair(label):
    """The sVirt MCS part of a static SELinux label: (sensitivity, (N, M)).

    sVirt isolates guests by giving each a pair of categories s0:cN,cM with
    N < M, both in c0..c1023 (libvirt's own dynamic labels use the same
    form). A static label must use exactly that form: without categories, or
    with a single one (s0:c5), a label is dominated by every label that adds
    categories (s0:c5,c9), whose qemu could then open this guest's images;
    ranges (c0.c1023) would let a guest dominate all others.
    """
    _user, _role, _type, level = parse_selinux_context(label)
    if '-' in level:
        raise XMLValidationError('static sVirt label %r must have a single level s0:cN,cM, not a range' % label)
    sens, _sep, cats = level.partition(':')
    items = cats.split(',') if cats else []
    if any('.' in item for item in items) or len(items) > 2:
        raise XMLValidationError('static sVirt label %r must use an MCS pair s0:cN,cM (N < M), '
                                 'not a category range or more than two categories' % label)
    if len(items) < 2:
        raise XMLValidationError('static SELinux label %r has %s MCS category: it needs two categories '
                                 's0:cN,cM (N < M, each c0..c%d), as libvirt\'s dynamic labels use, or every '
                                 'guest whose label adds categories dominates it and can open its images'
                                 % (label, 'one' if items else 'no', MCS_MAX_CATEGORY))
    numbers = [int(_CATEGORY_RE.match(item).group(1)) for item in items]
    if numbers[0] == numbers[1]:
        raise XMLValidationError('MCS pair of %r needs two distinct categories cN,cM with N < M (got c%d,c%d)'
                                 % (label, numbers[0], numbers[1]))
    if numbers[0] > numbers[1]:
        raise XMLValidationError('MCS pair of %r must be cN,cM with N < M (got c%d,c%d)'
                                 % (label, numbers[0], numbers[1]))
    return sens, tuple(numbers)


def mcs_categories(label):
    """Every MCS category an SELinux label can reach (all levels of a range)."""
    level = parse_selinux_context(label)[3]
    categories = set()
    for _sens, cats in parse_mls_range(level, label):
        categories.update(cats)
    return frozenset(categories)


def validate_seclabel(spec):
    """Validate the seclabel options; return the normalised spec.

    spec keys: type, model, label, imagelabel, baselabel, relabel (bool/None).
    """
    spec = dict(spec)
    stype = spec.get('type') or 'dynamic'
    model = spec.get('model')
    spec['type'] = stype
    if stype not in SECLABEL_TYPES:
        raise XMLValidationError('seclabel type must be one of %s' % ', '.join(SECLABEL_TYPES))
    if model is not None and model not in SECLABEL_MODELS:
        raise XMLValidationError('seclabel model must be one of %s' % ', '.join(SECLABEL_MODELS))
    if model is None and stype != 'none':
        raise XMLValidationError('a %s seclabel needs a model (selinux, apparmor or dac)' % stype)
    label, imagelabel, baselabel = spec.get('label'), spec.get('imagelabel'), spec.get('baselabel')
    if stype == 'none':
        if label or imagelabel or baselabel or spec.get('relabel'):
            raise XMLValidationError("type 'none' takes no label, imagelabel, baselabel or relabel")
        return spec
    if stype == 'static':
        if not label:
            raise XMLValidationError('a static seclabel needs a label')
        if baselabel:
            raise XMLValidationError('baselabel only applies to dynamic labels')
    if stype == 'dynamic':
        if label or imagelabel:
            raise XMLValidationError('a dynamic seclabel takes no label/imagelabel (libvirt generates them); '
                                     'use baselabel or type static')
        if spec.get('relabel') is False:
            raise XMLValidationError('libvirt requires relabel=yes for dynamic labels')
        if baselabel and model != 'selinux' and model != 'dac':
            raise XMLValidationError('baselabel is only supported by the selinux and dac models')
    if stype == 'static' and imagelabel and not spec.get('relabel'):
        raise XMLValidationError('imagelabel is only used when relabel is true')
    if model == 'selinux':
        for value in (label, imagelabel, baselabel):
            if value:
                parse_selinux_context(value)
        if stype == 'static':
            pair = mcs_pair(label)
            if imagelabel and mcs_pair(imagelabel) != pair:
                raise XMLValidationError('imagelabel %r and label %r must carry the same MCS categories, '
                                         'or the guest cannot open its own images' % (imagelabel, label))
            spec['mcs'] = pair
    elif model == 'dac':
        for value in (label, imagelabel, baselabel):
            if value and not _valid_dac(value):
                raise XMLValidationError('DAC label %r must be user:group or +uid:+gid' % value)
    elif model == 'apparmor':
        for value in (label, imagelabel):
            if value and not _APPARMOR_RE.match(value):
                raise XMLValidationError('AppArmor profile name %r contains invalid characters' % value)
    return spec


def _valid_dac(value):
    parts = value.split(':')
    return len(parts) == 2 and all(_DAC_PART_RE.match(p) for p in parts)


def build_seclabel(spec):
    """Validated spec -> <seclabel> Element."""
    spec = validate_seclabel(spec)
    elem = ET.Element('seclabel', {'type': spec['type']})
    if spec.get('model'):
        elem.set('model', spec['model'])
    if spec['type'] == 'none':
        return elem
    relabel = spec.get('relabel')
    if relabel is None:
        relabel = spec['type'] == 'dynamic'
    elem.set('relabel', 'yes' if relabel else 'no')
    for key in ('label', 'imagelabel', 'baselabel'):
        if spec.get(key):
            ET.SubElement(elem, key).text = spec[key]
    return elem


def domain_seclabels(domain):
    """{model or None: <seclabel>} of the domain itself (not per-disk labels)."""
    domain = parse_xml(domain, 'domain XML') if not isinstance(domain, ET.Element) else domain
    return dict((lab.get('model'), lab) for lab in domain.findall('seclabel'))


def canonical_seclabel(elem, inactive=True):
    """Canonical string of a <seclabel> ('' for None).

    libvirt always prints relabel (default yes for dynamic, no for static) and
    drops the generated label/imagelabel of a dynamic label from the inactive
    definition.
    """
    if elem is None:
        return ''
    elem = copy.deepcopy(elem)
    stype = elem.get('type') or 'dynamic'
    elem.set('type', stype)
    if stype == 'none':
        elem.attrib.pop('relabel', None)
        for child in list(elem):
            elem.remove(child)
    else:
        relabel = elem.get('relabel')
        if relabel is None:
            relabel = 'yes' if stype == 'dynamic' else 'no'
        elem.set('relabel', 'yes' if relabel in ('yes', 'true', '1') else 'no')
        if stype == 'dynamic' and inactive:
            for tag in ('label', 'imagelabel'):
                for child in elem.findall(tag):
                    elem.remove(child)
    children = sorted(elem, key=lambda c: c.tag)
    for child in list(elem):
        elem.remove(child)
    elem.extend(children)
    return canonical(elem, drop=())


def set_domain_seclabel(domain, seclabel, model):
    """Replace the domain's <seclabel> of ``model`` with ``seclabel`` (None: remove).
    A type='none' label without a model replaces every domain-level seclabel."""
    for old in domain.findall('seclabel'):
        if old.get('model') == model or model is None or old.get('model') is None:
            domain.remove(old)
    if seclabel is not None:
        domain.append(copy.deepcopy(seclabel))
    return domain


def find_mcs_conflicts(own_name, pair, domains):
    """Guests other than ``own_name`` whose SELinux label the MCS pair could
    reach or be reached by.

    A label conflicts when it shares any category with ``pair`` (the labels
    are equal, overlap, or one dominates the other) or when it has no
    category at all (``pair`` dominates it). Sensitivities are not compared
    (sVirt runs guests at s0), which only makes the check stricter.

    domains: iterable of (name, <domain> Element) - pass both the inactive
    definition (static labels) and, for running guests, the live XML (the
    dynamic label libvirt picked). Returns [(name, label)].
    """
    if pair is None:
        return []
    wanted = set(pair[1])
    conflicts = []
    for name, domain in domains:
        if name == own_name:
            continue
        lab = domain_seclabels(domain).get('selinux')
        if lab is None or lab.get('type') == 'none':
            continue
        text = (lab.findtext('label') or '').strip()
        if not text:
            continue
        try:
            other = mcs_categories(text)
        except XMLValidationError:
            continue
        if (wanted & other or not other) and (name, text) not in conflicts:
            conflicts.append((name, text))
    return conflicts


# --------------------------------------------------------------------------
# resource limits (cputune, memtune, blkiotune, interface bandwidth)
# --------------------------------------------------------------------------

# libvirt's memory units: K/KiB = 1024, KB = 1000, and so on
_UNITS = {
    'b': 1, 'bytes': 1,
    'k': 1024, 'kib': 1024, 'kb': 1000,
    'm': 1024 ** 2, 'mib': 1024 ** 2, 'mb': 1000 ** 2,
    'g': 1024 ** 3, 'gib': 1024 ** 3, 'gb': 1000 ** 3,
    't': 1024 ** 4, 'tib': 1024 ** 4, 'tb': 1000 ** 4,
}
MEMORY_UNLIMITED_KIB = 9007199254740991  # VIR_DOMAIN_MEMORY_PARAM_UNLIMITED

CPUTUNE_FIELDS = ('shares', 'period', 'quota', 'global_period', 'global_quota',
                  'emulator_period', 'emulator_quota')
MEMTUNE_FIELDS = ('hard_limit', 'soft_limit', 'swap_hard_limit')
BLKIO_DEVICE_FIELDS = ('weight', 'read_iops_sec', 'write_iops_sec', 'read_bytes_sec', 'write_bytes_sec')
BANDWIDTH_FIELDS = {'inbound': ('average', 'peak', 'burst', 'floor'), 'outbound': ('average', 'peak', 'burst')}


def size_to_kib(value, unit='KiB'):
    """'512M', '1GiB', 1048576 (KiB), 'unlimited' -> KiB (rounded up)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number, suffix = value, unit
    else:
        text = str(value).strip()
        if text.lower() == 'unlimited':
            return MEMORY_UNLIMITED_KIB
        match = re.match(r'^([0-9]+)\s*([A-Za-z]*)$', text)
        if not match:
            raise XMLValidationError('size %r is not a number with an optional unit (KiB, MiB, GiB, M, G ...)'
                                     % (value,))
        number, suffix = int(match.group(1)), match.group(2) or unit
    factor = _UNITS.get(suffix.lower())
    if factor is None:
        raise XMLValidationError('unknown size unit %r' % suffix)
    return -(-number * factor // 1024)


def _int_text(parent, tag):
    if parent is None:
        return None
    child = parent.find(tag)
    if child is None or child.text is None:
        return None
    return int(child.text.strip())


def read_cputune(domain):
    tune = domain.find('cputune')
    return dict((f, _int_text(tune, f)) for f in CPUTUNE_FIELDS if _int_text(tune, f) is not None)


def read_memtune(domain):
    tune = domain.find('memtune')
    result = {}
    if tune is None:
        return result
    for field in MEMTUNE_FIELDS:
        child = tune.find(field)
        if child is not None and child.text:
            result[field] = size_to_kib(child.text.strip() + (child.get('unit') or 'KiB'))
    return result


def read_blkiotune(domain):
    """{'weight': int, 'devices': {path: {field: int}}}"""
    tune = domain.find('blkiotune')
    result = {'devices': {}}
    if tune is None:
        return result
    weight = _int_text(tune, 'weight')
    if weight is not None:
        result['weight'] = weight
    for dev in tune.findall('device'):
        path = (dev.findtext('path') or '').strip()
        values = dict((f, _int_text(dev, f)) for f in BLKIO_DEVICE_FIELDS if _int_text(dev, f) is not None)
        result['devices'][path] = values
    return result


def read_bandwidth(iface):
    """{'inbound': {...}, 'outbound': {...}} of an <interface>."""
    result = {}
    bandwidth = iface.find('bandwidth')
    if bandwidth is None:
        return result
    for direction, fields in BANDWIDTH_FIELDS.items():
        node = bandwidth.find(direction)
        if node is not None:
            result[direction] = dict((f, int(node.get(f))) for f in fields if node.get(f) is not None)
    return result


def _set_children(parent, fields, values, unit=None):
    """Write values (None: keep, 0/'' handled by caller) as ordered child elements."""
    for field in fields:
        if field not in values:
            continue
        old = parent.find(field)
        if values[field] is None:
            if old is not None:
                parent.remove(old)
            continue
        if old is None:
            old = ET.SubElement(parent, field)
        old.text = str(values[field])
        if unit:
            old.set('unit', unit)


def _reorder(parent, order):
    children = list(parent)
    ranked = sorted(children, key=lambda c: order.index(c.tag) if c.tag in order else len(order))
    for child in children:
        parent.remove(child)
    parent.extend(ranked)


def _ensure(domain, tag):
    node = domain.find(tag)
    if node is None:
        node = ET.SubElement(domain, tag)
    return node


def _drop_if_empty(domain, node):
    if node is not None and not len(node):
        domain.remove(node)


def apply_limits(domain, limits):
    """Write the requested limits into a <domain> Element (in place).

    limits keys (all optional; absent = leave alone):
      cputune: {field: int}, memtune: {field: KiB or MEMORY_UNLIMITED_KIB},
      blkio_weight: int, blkio_devices: {path: {field: int}},
      bandwidth: {mac: {'inbound': {...}, 'outbound': {...}}}
    A memtune value of MEMORY_UNLIMITED_KIB, a blkio device field of 0 and a
    bandwidth direction with average 0 remove the setting, as in virsh.
    """
    cputune = limits.get('cputune') or {}
    if cputune:
        node = _ensure(domain, 'cputune')
        _set_children(node, CPUTUNE_FIELDS, cputune)
        _reorder(node, list(CPUTUNE_FIELDS))
        _drop_if_empty(domain, node)
    memtune = limits.get('memtune') or {}
    if memtune:
        node = _ensure(domain, 'memtune')
        values = dict((k, None if v == MEMORY_UNLIMITED_KIB else v) for k, v in memtune.items())
        _set_children(node, MEMTUNE_FIELDS, values, unit='KiB')
        _reorder(node, list(MEMTUNE_FIELDS) + ['min_guarantee'])
        _drop_if_empty(domain, node)
    if limits.get('blkio_weight') is not None or limits.get('blkio_devices'):
        node = _ensure(domain, 'blkiotune')
        if limits.get('blkio_weight') is not None:
            _set_children(node, ('weight',), {'weight': limits['blkio_weight']})
        for path, fields in (limits.get('blkio_devices') or {}).items():
            _apply_blkio_device(node, path, fields)
        _reorder(node, ['weight', 'device'])
        _drop_if_empty(domain, node)
    for mac, directions in (limits.get('bandwidth') or {}).items():
        iface = find_interface(domain, mac=mac)
        if iface is None:
            raise XMLValidationError('the guest has no interface with MAC %s' % mac)
        _apply_bandwidth(iface, directions)
    return domain


def _apply_blkio_device(node, path, fields):
    dev = None
    for candidate in node.findall('device'):
        if (candidate.findtext('path') or '').strip() == path:
            dev = candidate
    if dev is None:
        dev = ET.SubElement(node, 'device')
        ET.SubElement(dev, 'path').text = path
    values = dict((k, (None if v == 0 else v)) for k, v in fields.items() if k in BLKIO_DEVICE_FIELDS)
    _set_children(dev, BLKIO_DEVICE_FIELDS, values)
    _reorder(dev, ['path'] + list(BLKIO_DEVICE_FIELDS))
    if len(dev) == 1:  # only <path> left
        node.remove(dev)


def _apply_bandwidth(iface, directions):
    bandwidth = iface.find('bandwidth')
    if bandwidth is None:
        bandwidth = ET.SubElement(iface, 'bandwidth')
    for direction in ('inbound', 'outbound'):
        if direction not in directions or directions[direction] is None:
            continue
        values = directions[direction]
        old = bandwidth.find(direction)
        if old is not None:
            bandwidth.remove(old)
        if values.get('average') == 0 or not any(values.get(f) for f in BANDWIDTH_FIELDS[direction]):
            continue
        node = ET.Element(direction)
        for field in BANDWIDTH_FIELDS[direction]:
            if values.get(field):
                node.set(field, str(values[field]))
        bandwidth.append(node)
    _reorder(bandwidth, ['inbound', 'outbound'])
    if not len(bandwidth):
        iface.remove(bandwidth)


def read_limits(domain):
    """The limits of a <domain> in the form apply_limits() takes."""
    blkio = read_blkiotune(domain)
    bandwidth = {}
    for iface in domain_interfaces(domain):
        mac = interface_mac(iface)
        if mac:
            bandwidth[mac] = read_bandwidth(iface)
    return {
        'cputune': read_cputune(domain),
        'memtune': read_memtune(domain),
        'blkio_weight': blkio.get('weight'),
        'blkio_devices': blkio['devices'],
        'bandwidth': bandwidth,
    }


def limits_text(domain):
    """The limit-related parts of a <domain> as canonical, readable XML
    (cputune scheduling values, memtune, blkiotune, interface bandwidth)."""
    parts = []
    cputune = read_cputune(domain)
    if cputune:
        node = ET.Element('cputune')
        _set_children(node, CPUTUNE_FIELDS, cputune)
        parts.append(to_string(node))
    memtune = read_memtune(domain)
    if memtune:
        node = ET.Element('memtune')
        _set_children(node, MEMTUNE_FIELDS, memtune, unit='KiB')
        parts.append(to_string(node))
    blkio = read_blkiotune(domain)
    if blkio.get('weight') is not None or blkio['devices']:
        node = ET.Element('blkiotune')
        if blkio.get('weight') is not None:
            ET.SubElement(node, 'weight').text = str(blkio['weight'])
        for path in sorted(blkio['devices']):
            dev = ET.SubElement(node, 'device')
            ET.SubElement(dev, 'path').text = path
            _set_children(dev, BLKIO_DEVICE_FIELDS, blkio['devices'][path])
        parts.append(to_string(node))
    for iface in domain_interfaces(domain):
        bandwidth = read_bandwidth(iface)
        if bandwidth:
            node = ET.Element('interface', {'mac': interface_mac(iface) or ''})
            bw = ET.SubElement(node, 'bandwidth')
            for direction in ('inbound', 'outbound'):
                if direction in bandwidth:
                    ET.SubElement(bw, direction, dict((k, str(v)) for k, v in sorted(bandwidth[direction].items())))
            parts.append(to_string(node))
    return '\n'.join(parts) + ('\n' if parts else '')
