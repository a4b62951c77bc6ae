# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Resource limit XML for the secvirt.kvm libvirt modules.

Reading and writing a domain's cgroup tuning (``<cputune>`` scheduling values,
``<memtune>``, ``<blkiotune>``) and the ``<bandwidth>`` of its interfaces, with
libvirt's size units converted to KiB. Pure XML like libvirt_xml.py: the
domain_limits module compares what read_limits() returns and shows the
canonical, readable XML of limits_text() as its diff.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import xml.etree.ElementTree as ET

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_xml import (
    XMLValidationError, domain_interfaces, find_interface, interface_mac, to_string)


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
