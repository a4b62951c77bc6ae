# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Pure XML helpers for the secvirt.kvm libvirt modules.

Nothing here talks to libvirt: these functions parse, validate, build and
canonicalise the XML that the modules hand to (or read from) the daemon, so
that they can be unit-tested without a hypervisor. This file holds what every
kind of definition shares (parsing, serialisation, canonical form, diffs, MAC
addresses, a domain's interfaces); the topics live next to it in
nwfilter_xml.py (network filters), seclabel_xml.py (sVirt security labels) and
limits_xml.py (cgroup tuning and interface bandwidth).

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
# domain interfaces (shared by the nwfilter and limits helpers)
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
